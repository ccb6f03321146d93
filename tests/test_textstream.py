"""Text files over the loader's size limit: read window by window and summarized in parts."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from click.testing import CliRunner

from assistant.cli import main
from assistant.documents import Document, LargeTextFile, large, load_document, open_for_summary
from tests.fake_engine import FakeEngine
from assistant.modelref import LoadedModel
from assistant.store import Store
from assistant.summarize import Summarizer, SummaryForm
from models.errors import XGenError

PARAGRAPH = ("Entry {n}: the night shift logged {n} alarms on line {n}; the café’s boiler — unit №{n} — "
             "was reset at 0{m}:15 and the supervisor signed the report.\n\n")


def write_log(path, n: int, newline: str = "\n") -> str:
    text = "".join(PARAGRAPH.format(n=i, m=i % 10) for i in range(n)).replace("\n", newline)
    path.write_bytes(text.encode("utf-8"))
    return text


def stream_of(path, window: int) -> LargeTextFile:
    got = open_for_summary(path, max_bytes=1024, window_bytes=window)
    assert isinstance(got, LargeTextFile)
    return got


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_windows_join_to_the_text_of_the_whole_file(tmp_path, newline):
    path = tmp_path / "shift.log"
    write_log(path, 400, newline)
    stream = stream_of(path, window=997)  # odd size: cuts land inside multi-byte characters too
    windows = list(stream.windows())
    assert len(windows) > 30
    assert "".join(text for text, _ in windows) == load_document(path, max_bytes=10**9).text
    consumed = [c for _, c in windows]
    assert consumed == sorted(consumed) and consumed[-1] == path.stat().st_size
    assert stream.sha256 == load_document(path, max_bytes=10**9).sha256


def test_a_line_longer_than_a_window_is_cut_between_characters(tmp_path):
    path = tmp_path / "one-line.txt"
    text = "é€😀a" * 5000  # no newline at all; 2-, 3- and 4-byte characters
    path.write_bytes(text.encode("utf-8"))
    assert "".join(t for t, _ in stream_of(path, window=1001).windows()) == text


def test_windows_hold_bounded_memory(tmp_path):
    path = tmp_path / "big.log"
    with open(path, "w", encoding="utf-8") as f:
        for block in range(40):  # 40 x 0.6 MB = 24 MB
            f.write("".join(PARAGRAPH.format(n=block * 1000 + i, m=i % 10) for i in range(4000)))
    size = path.stat().st_size
    assert size > 20 * 2**20
    stream = stream_of(path, window=256 * 1024)
    tracemalloc.start()
    try:
        chars = sum(len(text) for text, _ in stream.windows())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chars > 20 * 2**20
    assert peak < 3 * 2**20, f"peak {peak / 2**20:.1f} MiB while streaming {size / 2**20:.0f} MiB"


def test_what_is_not_streamed(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("A small note.")
    assert isinstance(open_for_summary(small, max_bytes=1024), Document)
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(b"%PDF-1.7\n" + b"x" * 4096)
    with pytest.raises(XGenError, match="too large"):
        open_for_summary(pdf, max_bytes=1024)
    html = tmp_path / "export.dat"  # unknown extension: the content says HTML
    html.write_text("<!DOCTYPE html><html><body>" + "<p>text</p>" * 500)
    with pytest.raises(XGenError, match="too large"):
        open_for_summary(html, max_bytes=1024)
    wide = tmp_path / "wide.txt"
    wide.write_bytes("line of text\n".encode("utf-16") * 200)
    with pytest.raises(XGenError, match="UTF-16/32.*UTF-8"):
        list(stream_of(wide, window=1024).windows())
    binary = tmp_path / "data.log"
    binary.write_bytes(b"\x00\x01\x02\x03" * 1024)
    with pytest.raises(XGenError, match="binary"):
        list(stream_of(binary, window=1024).windows())
    with pytest.raises(XGenError, match="No such file"):
        open_for_summary(tmp_path / "missing.txt", max_bytes=1024)


def test_summarize_stream_reads_every_paragraph_once_in_full_parts(tmp_path):
    path = tmp_path / "shift.log"
    text = write_log(path, 300)
    engine = FakeEngine(n_ctx=1024, default_reply="Part summary.")
    result = Summarizer(engine).summarize(stream_of(path, window=2000), SummaryForm("bullets"))
    prompts = engine.prompt_texts()
    map_prompts = [p for p in prompts if 'Summarize this part of the document "shift.log"' in p]
    stats = result.stats
    assert len(map_prompts) == stats.parts >= 10
    for i in range(300):
        needle = PARAGRAPH.format(n=i, m=i % 10).strip()
        assert sum(needle in p for p in map_prompts) == 1, i
    where = [next(k for k, p in enumerate(map_prompts) if PARAGRAPH.format(n=i, m=i % 10).strip() in p)
             for i in range(300)]
    assert where == sorted(where)  # in the file's order
    assert "bullet points" in prompts[-1] and result.text == "Part summary."
    assert all(len(ids) < engine.n_ctx for ids in engine.prompts)
    # Windows much smaller than a part do not make short parts: the same number of parts
    # as summarizing the whole text at once (within one), and the same token count.
    whole = FakeEngine(n_ctx=1024, default_reply="Part summary.")
    at_once = Summarizer(whole).summarize(load_document(path, max_bytes=10**9)).stats
    assert abs(stats.parts - at_once.parts) <= 1
    assert abs(stats.document_tokens - engine.count_tokens(text)) <= stats.parts


def test_summarize_stream_stop_keeps_parts_and_rerun_continues(tmp_path):
    path = tmp_path / "shift.log"
    write_log(path, 300)
    engine = FakeEngine(n_ctx=1024, default_reply="Part summary.")
    summarizer = Summarizer(engine)
    stop = None

    def on_progress(stage, done, total):
        if stage == "read" and len(engine.prompts) >= 3:  # after the third part (not inside it)
            stop.set()

    import threading

    stop = threading.Event()
    first = summarizer.summarize(stream_of(path, window=4000), stop=stop, on_progress=on_progress)
    assert first.stopped and not first.text and len(first.partials) >= 3
    assert "re-run continues" in first.notes[0]
    again = summarizer.summarize(stream_of(path, window=4000))
    assert not again.stopped and again.stats.cached_parts == len(first.partials)


def test_cli_summarize_streams_a_file_over_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("XGEN_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(large, "DEFAULT_MAX_BYTES", 4096)
    monkeypatch.setattr(large, "WINDOW_BYTES", 3000)
    engine = FakeEngine(n_ctx=1024, default_reply="Alarms were logged and the boiler was reset.")
    monkeypatch.setattr("assistant.modelref.open_model", lambda *a, **k: LoadedModel("fake", engine))
    path = tmp_path / "shift.log"
    write_log(path, 200)
    result = CliRunner().invoke(main, ["summarize", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["summary"] == "Alarms were logged and the boiler was reset."
    assert out["stats"]["parts"] >= 5
    with Store() as store:
        (summary,) = store.summaries()
        assert summary.sha256 == load_document(path, max_bytes=10**9).sha256
