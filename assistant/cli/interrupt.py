"""Ctrl+C and `kill` during a job: stop cleanly, keep what was made, exit 130.

The job runs in a worker thread; the main thread only waits, so Python runs the signal
handler at once even while the worker is inside llama.cpp or torch. The first SIGINT
or SIGTERM sets the job's stop event (engines check it between tokens, and llama.cpp
between graph nodes through its abort callback), so the job returns within moments
with what it produced, which the face prints and the core has saved. A second signal
leaves at once without interpreter finalization (native libraries can crash tearing
down while a worker is inside them); replies are saved as they stream, so at most the
last half second of text is lost.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
STOPPED_EXIT = 130  # 128 + SIGINT, what shells expect after Ctrl+C
CAUGHT = (signal.SIGINT, signal.SIGTERM)


def leave_now(code: int = STOPPED_EXIT) -> None:
    """Exit without finalization (after flushing what was printed)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken pipe: nothing more can be shown anyway
    os._exit(code)


def run_interruptible(work: Callable[[threading.Event], T], *, notice: str = "stopping…") -> tuple[T, bool]:
    """Run `work(stop)` in a thread; returns (its result, whether a signal asked it to stop).

    The work's own exceptions are re-raised here, in the main thread."""
    stop = threading.Event()
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = work(stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            outcome["error"] = exc

    def on_signal(signum, frame) -> None:
        if stop.is_set():
            leave_now()
        stop.set()
        os.write(2, f"\n{notice} (Ctrl+C again to leave at once)\n".encode())

    previous = {sig: signal.signal(sig, on_signal) for sig in CAUGHT}
    try:
        thread = threading.Thread(target=target, name="xgen-job", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"], stop.is_set()  # type: ignore[return-value]
