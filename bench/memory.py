"""Peak memory and extra disk of a child process, sampled from /proc (Linux)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunStats:
    seconds: float
    peak_anon_kib: int  # RssAnon: memory the process really owns
    peak_rss_kib: int  # VmRSS: also counts reclaimable file pages of memory-mapped shards
    peak_disk_bytes: int  # largest total size of files in the watched folder
    returncode: int


def _status(pid: int) -> dict[str, int]:
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return fields


def _folder_bytes(folder: Path | None) -> int:
    """Bytes of the files under `folder`, subfolders included (symlinks counted as links)."""
    if folder is None:
        return 0
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def measure(cmd: list[str], watch: Path | None = None, interval: float = 0.02, env=None, preexec_fn=None,
            check: bool = True) -> RunStats:
    """Run cmd to completion, sampling its memory and the size of `watch`.

    stderr goes to a temporary file, not a pipe: a chatty child (llama.cpp's per-tensor
    log, progress bars) would otherwise block on a full pipe while we only poll.
    """
    with tempfile.TemporaryFile() as err_file:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_file, env=env, preexec_fn=preexec_fn)
        anon = rss = disk = 0
        while proc.poll() is None:
            s = _status(proc.pid)
            anon = max(anon, s.get("RssAnon", 0))
            rss = max(rss, s.get("VmRSS", 0))
            disk = max(disk, _folder_bytes(watch))
            time.sleep(interval)
        seconds = time.perf_counter() - started
        disk = max(disk, _folder_bytes(watch))
        if proc.returncode != 0 and check:
            err_file.seek(0)
            err = err_file.read().decode(errors="replace")
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return RunStats(seconds, anon, rss, disk, proc.returncode)
