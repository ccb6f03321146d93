"""Streamed summaries: progress moves with each part, and standard input over the size
limit streams like a large file (bounded memory) while small input stays one document."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from models.errors import XGenError
from tests.cli_helpers import ROOT

# -- progress of a streamed summary ------------------------------------------------------


def test_streamed_summary_progress_moves_with_each_part(tmp_path):
    """A 4 MB window holds hundreds of parts for a real model: progress moved once per
    window, so a 60 MB summary showed "read 4 of 60 MiB" for hours. It now moves per part."""
    from assistant.documents import open_for_summary
    from tests.fake_engine import FakeEngine
    from assistant.summarize import Summarizer

    path = tmp_path / "shift.log"
    path.write_text("".join(f"Entry {i}: the night shift logged {i} alarms on line {i % 9}.\n\n"
                            for i in range(3000)))
    size = path.stat().st_size
    stream = open_for_summary(path, max_bytes=1024, window_bytes=size // 3 + 1)  # three windows
    seen: list[tuple[str, int, int]] = []
    result = Summarizer(FakeEngine(n_ctx=1024, default_reply="Alarms.")).summarize(
        stream, on_progress=lambda stage, done, total: seen.append((stage, done, total)))
    reads = [done for stage, done, total in seen if stage == "read"]
    assert all(total == size for stage, _, total in seen if stage == "read")
    assert result.stats.parts > 30
    assert len(reads) >= result.stats.parts  # once per part (and once at the end), not once per window
    assert reads == sorted(reads) and reads[-1] == size
    # Evenly spread: no jump of a whole window, and it moves within the first window.
    steps = [b - a for a, b in zip([0, *reads], reads)]
    assert max(steps) < size / 10, steps
    assert len({r for r in reads if r < size // 3}) > 5


def test_the_read_line_shows_the_movement(capsys):
    from assistant.cli.printer import EventPrinter

    show = EventPrinter(quiet=False).progress
    total = 60 << 20
    for done in (int(4.2 * 2**20), int(4.4 * 2**20), total):
        show("read", done, total)
    err = capsys.readouterr().err
    assert "\rread 4.2 of 60.0 MiB (7%)…" in err and "\rread 4.4 of 60.0 MiB (7%)…" in err
    assert err.endswith("\rread 60.0 of 60.0 MiB (100%)…\n")


# -- standard input over the size limit streams like a file ------------------------------

STDIN_SUMMARY = r"""
import json, resource, sys
import assistant.modelref
from assistant.engines.base import Completion, GenerationStats
from tests.fake_engine import FakeEngine
from assistant.modelref import LoadedModel


class CheapEngine(FakeEngine):
    # Counts a token per 4 characters instead of running tiktoken over 60+ MB.
    def tokenize(self, text, *args, **kwargs):
        return [1] * (len(text) // 4 + 1)

    def count_tokens(self, text):
        return len(text) // 4 + 1

    def generate(self, prompt_ids, settings, *, stop=None, on_text=None, on_prefill=None):
        self.prompts.append(len(prompt_ids))
        if on_text:
            on_text("Alarms were logged.")
        return Completion("Alarms were logged.", [], GenerationStats(len(prompt_ids), len(prompt_ids), 4,
                                                                      finish="eos"))


engine = CheapEngine(n_ctx=1 << 20)
assistant.modelref.open_model = lambda *a, **k: LoadedModel("cheap", engine)
from assistant.cli import main

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    main(["summarize", "-"], standalone_mode=False)
finally:
    sys.stderr.write(json.dumps({"calls": len(engine.prompts), "rss_growth_kb":
                                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}) + "\n")
"""


def _feed(proc: subprocess.Popen, size: int) -> None:
    """Write `size` bytes of log lines to the child's stdin, 1 MB at a time (never held whole)."""
    line = b"2026-11-23T10:00:00Z worker-3 handled request in 12 ms; the queue held 4 jobs.\n"
    block = line * ((1 << 20) // len(line))
    sent = 0
    try:
        while sent < size:
            piece = block[: size - sent]
            proc.stdin.write(piece)
            sent += len(piece)
    finally:
        proc.stdin.close()


@pytest.mark.parametrize("megabytes", [60, 150])
def test_stdin_over_the_limit_streams_like_a_file(tmp_path, megabytes):
    import json
    import threading

    env = dict(os.environ, XGEN_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1")
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "wb") as out_file, open(err_path, "wb") as err_file:
        proc = subprocess.Popen([sys.executable, "-c", STDIN_SUMMARY], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                stdout=out_file, stderr=err_file)
    size = megabytes << 20
    feeder = threading.Thread(target=_feed, args=(proc, size), daemon=True)
    feeder.start()
    try:
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    feeder.join(10)
    stdout = out_path.read_text()
    err = err_path.read_text(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    report = json.loads(err.strip().splitlines()[-1])
    assert stdout.strip() == "Alarms were logged."
    # Every byte was summarized (~4 characters a token here), in parts of about a window.
    stats = re.search(r"\((\d+) document tokens, (\d+) parts, (\d+) model calls", err)
    assert stats, err[-2000:]
    assert int(stats[1]) >= size // 4 and int(stats[2]) >= megabytes // 4
    assert report["calls"] == int(stats[3])
    assert "too large" not in err and "Traceback" not in err
    # Progress in MiB read, its total unknown until the end, then the full size.
    assert "read 4.0 MiB" in err.replace("\r", "\n") or "read 3.9 MiB" in err.replace("\r", "\n"), err[-2000:]
    assert f"read {megabytes:.1f} of {megabytes:.1f} MiB (100%)" in err
    # Memory: the 50 MB the loader holds before it can tell, a few windows and the imports
    # of the command (~116 MB measured for 60 MB and for 150 MB alike), whatever the input
    # size; holding 150 MB of input as bytes and text would take twice that.
    assert report["rss_growth_kb"] < 135 << 10, report


def test_small_stdin_is_still_one_document(tmp_path):
    import io

    from assistant.documents import Document, LargeTextFile, open_stdin_for_summary

    doc = open_stdin_for_summary(io.BytesIO(b"The boiler was reset.\n"))
    assert isinstance(doc, Document) and doc.text == "The boiler was reset.\n" and doc.source == "<stdin>"
    big = open_stdin_for_summary(io.BytesIO(b"line of text\n" * 1000), max_bytes=5000, window_bytes=4096)
    assert isinstance(big, LargeTextFile) and big.size is None
    windows = list(big.windows())
    assert "".join(t for t, _ in windows) == "line of text\n" * 1000
    assert big.size == 13000 and windows[-1][1] == 13000
    with pytest.raises(XGenError, match=r"^standard input is too large: more than 4\.9 KB"):
        open_stdin_for_summary(io.BytesIO(b"%PDF-1.4\n" + b"x" * 9000), max_bytes=5000)

