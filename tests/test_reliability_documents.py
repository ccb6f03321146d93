"""Document loaders on hostile input: damaged PDFs and DOCX files, mixed encodings, 10 MB
lines, HTML nested or left open for megabytes, a file far over the size limit.

tests/test_documents.py covers the formats, random bytes behind known prefixes, the size
limit on small files, a pipe and 100k nested <div>s through html_to_text. Here: what is
left, each time with a deadline and "a Document or a one-line XGenError, nothing else".
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.cli import main
from assistant.documents import DEFAULT_MAX_BYTES, Document, load_document
from models.errors import XGenError
from tests import hostile_docx
from tests.test_documents import PDF_PAGES, make_docx, make_pdf

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def load_or_error(path: Path, seconds: float = 5.0) -> Document | XGenError:
    """load_document within `seconds`: a usable Document or a one-line XGenError."""
    t0 = time.perf_counter()
    try:
        doc = load_document(path)
    except XGenError as exc:
        result: Document | XGenError = exc
        assert str(exc) and "\n" not in str(exc)
    else:
        result = doc
        assert doc.text.strip() and "\r" not in doc.text
        doc.text.encode("utf-8")  # no lone surrogates
    elapsed = time.perf_counter() - t0
    assert elapsed < seconds, f"{path.name}: {elapsed:.1f} s"
    return result


# -- damaged PDFs and DOCX files ---------------------------------------------------------


@pytest.fixture(scope="module")
def pdfs() -> dict[str, bytes]:
    """The hand-written PDF of test_documents, and the same re-written by pypdf with
    compressed (Flate) content streams, so damage also hits the decompressor."""
    from pypdf import PdfReader, PdfWriter

    plain = make_pdf(PDF_PAGES)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(plain)))
    for page in writer.pages:
        page.compress_content_streams()
    out = io.BytesIO()
    writer.write(out)
    return {"plain": plain, "compressed": out.getvalue()}


def damage(data: bytes, draw) -> bytes:
    """Flip some bytes, maybe cut the end off, maybe splice a piece elsewhere."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 12))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        a, b = sorted(draw(st.lists(st.integers(0, len(out)), min_size=2, max_size=2)))
        at = draw(st.integers(0, len(out)))
        out[at:at] = out[a:b]
    if draw(st.booleans()):
        out = out[: draw(st.integers(1, len(out)))]
    return bytes(out)


@FUZZ
@given(data=st.data(), base=st.sampled_from(["plain", "compressed"]), name=st.sampled_from(["x.pdf", "scan"]))
def test_damaged_pdf(tmp_path, pdfs, data, base, name):
    path = tmp_path / name
    path.write_bytes(damage(pdfs[base], data.draw))
    result = load_or_error(path)
    if isinstance(result, Document) and result.kind == "pdf":
        assert result.pages and result.pages[0] == 0
        assert all(0 <= a <= b <= len(result.text) for a, b in zip(result.pages, result.pages[1:]))


@pytest.fixture(scope="module")
def docx_bytes(tmp_path_factory) -> bytes:
    return make_docx(tmp_path_factory.mktemp("docx") / "good.docx").read_bytes()


@FUZZ
@given(data=st.data())
def test_damaged_docx_archive(tmp_path, docx_bytes, data):
    """Bytes flipped anywhere in the ZIP: headers, compressed data, central directory."""
    path = tmp_path / "x.docx"
    path.write_bytes(damage(docx_bytes, data.draw))
    load_or_error(path)


@FUZZ
@given(data=st.data(), member=st.sampled_from(["word/document.xml", "word/styles.xml",
                                               "[Content_Types].xml", "word/_rels/document.xml.rels"]))
def test_damaged_xml_in_a_valid_docx(tmp_path, docx_bytes, data, member):
    """A sound ZIP whose XML parts are damaged: python-docx and lxml see the bad bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx_bytes)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            content = src.read(item)
            dst.writestr(item.filename, damage(content, data.draw) if item.filename == member else content)
    path = tmp_path / "x.docx"
    path.write_bytes(buf.getvalue())
    load_or_error(path)


# -- encodings, NUL bytes ----------------------------------------------------------------

CP1252_TEXT = st.text(st.sampled_from(list("abc XYZ.,;'\n") + list("éèàçüößÉ€“”’…—«»°")), min_size=1, max_size=60)
UTF8_TEXT = st.text(st.sampled_from(list("abc XYZ.,;'\n") + list("éüß東京Привет🙂—“”€")), min_size=1, max_size=60)


@FUZZ
@given(parts=st.lists(st.tuples(st.sampled_from(["utf-8", "cp1252"]), st.one_of(UTF8_TEXT, CP1252_TEXT)),
                      min_size=1, max_size=8))
def test_mixed_utf8_and_cp1252(tmp_path, parts):
    data = b""
    for codec, text in parts:
        try:
            data += text.encode(codec)
        except UnicodeEncodeError:  # 東京 has no cp1252 spelling
            data += text.encode("utf-8")
    path = tmp_path / "mixed.txt"
    path.write_bytes(data)
    result = load_or_error(path)
    if isinstance(result, Document):
        assert result.kind == "text"


def test_utf8_file_with_a_cp1252_paragraph_is_text(tmp_path):
    """A UTF-8 file with one pasted cp1252 paragraph is text in both encodings, not 'binary'."""
    utf8 = "Grüße aus Köln — the meeting notes, 東京 office.\n" * 200
    legacy = "Le café “Chez Zoé” coûte 5 €.\n"
    path = tmp_path / "notes.txt"
    path.write_bytes(utf8.encode("utf-8") + legacy.encode("cp1252") + utf8.encode("utf-8"))
    doc = load_document(path)
    assert doc.text == utf8 + legacy + utf8


@FUZZ
@given(text=st.text(st.sampled_from(list("abc \n") + ["\0"]), min_size=1, max_size=400),
       codec=st.sampled_from(["utf-8", "utf-16-le", "utf-16-be"]))
def test_nul_bytes_anywhere(tmp_path, text, codec):
    path = tmp_path / "nul.txt"
    path.write_bytes(text.encode(codec))
    result = load_or_error(path)
    if isinstance(result, Document):
        assert "\0" not in result.text


# -- huge lines, deep and unclosed HTML --------------------------------------------------

TEN_MB = 10 << 20


TEN_MB_LINES = {
    "words.txt": lambda: b"word " * (TEN_MB // 5),
    "no-spaces.md": lambda: b"x" * TEN_MB,
    "literal.py": lambda: b"s = '" + b"\xc3\xa9" * (TEN_MB // 2) + b"'\n",
    "cp1252.txt": lambda: "café “quoted” ".encode("cp1252") * (TEN_MB // 15),
    "one-paragraph.html": lambda: b"<html><body><p>" + b"word " * (TEN_MB // 5) + b"</p></body></html>",
    "one-attribute.html": lambda: b'<html><body><p>text</p><a title="' + b"a" * TEN_MB + b'">x</a>',
}


@pytest.mark.parametrize("name", list(TEN_MB_LINES))
def test_ten_megabyte_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(TEN_MB_LINES[name]())
    result = load_or_error(path, seconds=15)
    assert isinstance(result, Document), result
    assert len(result.text) >= 4


def test_html_tag_left_open_for_megabytes_is_linear(tmp_path):
    """A tag never closed, 24 MB before the end: html.parser keeps it buffered, and feeding
    the page in pieces re-scanned all of it at every piece (quadratic: ~20 s here, minutes
    at the 50 MB limit). Fed at once it takes a second or two."""
    path = tmp_path / "open.html"
    path.write_bytes(b'<html><body><p>Intro.</p><a href="' + b"a " * (12 << 20))
    result = load_or_error(path, seconds=10)
    assert isinstance(result, Document) and result.text.startswith("Intro.")


DEPTH = 100_000


DEEP_HTML = {  # name -> (body, the text it must give)
    "unclosed-div": (b"<div>" * DEPTH + b"deep", "deep\n"),
    "nested-spans": (b"<span>" * DEPTH + b"deep" + b"</span>" * DEPTH, "deep\n"),
    "nested-pre": (b"<pre>" * DEPTH + b"deep" + b"</pre>" * DEPTH + b"<p>after</p>", "deep\n\nafter\n"),
    "nested-script": (b"<script>" * DEPTH + b"hidden" + b"</script>" * DEPTH + b"<p>after</p>", "after\n"),
    "nested-tables": (b"<table><tr><td>" * DEPTH + b"deep", "deep\n"),
    "unclosed-svg": (b"<p>before</p>" + b"<svg>" * DEPTH + b"hidden", "before\n"),
}


@pytest.mark.parametrize("name", list(DEEP_HTML))
def test_deep_html_through_load_document(tmp_path, name):
    body, expected = DEEP_HTML[name]
    path = tmp_path / f"{name}.html"
    path.write_bytes(b"<!doctype html><html><body>" + body)
    result = load_or_error(path, seconds=10)
    assert isinstance(result, Document), result
    assert result.text == expected


# -- far over the size limit -------------------------------------------------------------

MEASURE = """
import json, resource, sys, time
from assistant.documents import load_document
from models.errors import XGenError

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    load_document(sys.argv[1])
    message = None
except XGenError as exc:
    message = str(exc)
seconds = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"message": message, "seconds": seconds, "rss_growth_kb": after - before}))
"""


@pytest.fixture(scope="module")
def huge_text(tmp_path_factory) -> Path:
    """256 MB of real text lines (five times the 50 MB limit), written in 16 MB blocks."""
    path = tmp_path_factory.mktemp("huge") / "huge.txt"
    line = b"The quarterly report covers revenue, costs and the outlook for next year.\n"
    block = line * ((16 << 20) // len(line))
    with open(path, "wb") as f:
        while f.tell() < 256 << 20:
            f.write(block)
        f.truncate(256 << 20)
    return path


def test_huge_text_file_is_refused_without_reading_it(huge_text):
    assert huge_text.stat().st_size > 5 * DEFAULT_MAX_BYTES
    out = subprocess.run([sys.executable, "-c", MEASURE, str(huge_text)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["message"] == f"{huge_text} is too large: 256 MB (the limit is 50 MB); split it into smaller files"
    assert report["seconds"] < 1.0
    # Reading even the first 50 MB would show; a stat() does not.
    assert report["rss_growth_kb"] < 8 << 10, report


def test_huge_text_file_from_the_command_line(huge_text, tmp_path, monkeypatch):
    """Questions need the whole text: refused at once (summarize streams it: see below)."""
    from assistant.cli import main

    monkeypatch.setenv("XGEN_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(main, ["ask", str(huge_text), "-q", "What is the outlook?", "--model", "demo"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "too large" in lines[0], result.output


STREAM = """
import json, resource, sys, time
from assistant.documents import open_for_summary

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
stream = open_for_summary(sys.argv[1])
windows = chars = consumed = 0
for text, consumed in stream.windows():
    windows += 1
    chars += len(text)
print(json.dumps({"kind": type(stream).__name__, "windows": windows, "chars": chars, "consumed": consumed,
                  "seconds": time.perf_counter() - t0, "sha256": stream.sha256,
                  "rss_growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}))
"""


def test_a_1_gb_text_file_streams_without_loading_it_whole(tmp_path):
    path = tmp_path / "server.log"
    lines = b"".join(b"2026-11-23T10:%02d:%02dZ worker-%d handled request %d in %d ms\n"
                     % (i // 60 % 60, i % 60, i % 7, i, i % 997) for i in range(200_000))
    with open(path, "wb") as f:
        while f.tell() < 1 << 30:
            f.write(lines)
    size = path.stat().st_size
    out = subprocess.run([sys.executable, "-c", STREAM, str(path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    path.unlink()
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["kind"] == "LargeTextFile"
    assert report["consumed"] == report["chars"] == size  # every byte once (ASCII, "\n" newlines)
    assert report["windows"] >= size // (4 << 20)
    assert report["sha256"] and len(report["sha256"]) == 64
    # A few 4 MB windows at a time, never the file: 1 GiB streamed in under 64 MiB.
    assert report["rss_growth_kb"] < 64 << 10, report


# -- DOCX "zip bombs": bounded work before python-docx ------------------------------------


@pytest.fixture
def python_docx_never_parses(monkeypatch):
    """Fail if python-docx is handed the document (the bound must refuse it first)."""
    import docx

    def refuse(*args, **kwargs):
        raise AssertionError("python-docx was given the bomb")

    monkeypatch.setattr(docx, "Document", refuse)


@pytest.mark.parametrize("bomb, reason", [
    (lambda t: hostile_docx.empty_paragraphs(t, 1_000_000), "more than 100,000 paragraphs"),
    (lambda t: hostile_docx.empty_runs(t, 3_000_000), "more than 2,000,000 XML elements"),
])
def test_a_docx_bomb_is_refused_before_python_docx_builds_it(tmp_path, home, docx_bytes, bomb, reason,
                                                             python_docx_never_parses):
    path = hostile_docx.write(tmp_path / "bomb.docx", bomb(docx_bytes))
    assert path.stat().st_size < 200_000  # under every size limit
    with pytest.raises(XGenError) as excinfo:
        load_document(path)
    message = str(excinfo.value)
    assert "\n" not in message and reason in message and "save it as plain text" in message

    result = CliRunner().invoke(main, ["ask", str(path), "-q", "what is in it?", "--model", "remote:http://127.0.0.1:9"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.splitlines()[-1] == f"error: {message}" and "Traceback" not in result.output


def test_a_docx_at_the_bounds_is_read_and_one_past_them_refused(tmp_path, docx_bytes, monkeypatch):
    from lxml import etree

    from assistant.documents import docx as docx_reader

    paragraphs = "".join(f"<w:p><w:r><w:t>clause {i}</w:t></w:r></w:p>" for i in range(50)).encode()
    data = hostile_docx.docx_with_body(docx_bytes, paragraphs)
    path = hostile_docx.write(tmp_path / "fifty.docx", data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # counted independently, with the whole tree
        root = etree.fromstring(zf.read("word/document.xml"))
    n_paragraphs = sum(1 for _ in root.iter(docx_reader.WORD_NS + "p"))
    n_elements = sum(1 for _ in root.iter())
    assert n_paragraphs >= 50

    monkeypatch.setattr(docx_reader, "MAX_PARAGRAPHS", n_paragraphs)
    monkeypatch.setattr(docx_reader, "MAX_ELEMENTS", n_elements)
    assert "clause 49" in load_document(path).text
    monkeypatch.setattr(docx_reader, "MAX_PARAGRAPHS", n_paragraphs - 1)
    with pytest.raises(XGenError, match=f"more than {n_paragraphs - 1:,} paragraphs"):
        load_document(path)
    monkeypatch.setattr(docx_reader, "MAX_PARAGRAPHS", n_paragraphs)
    monkeypatch.setattr(docx_reader, "MAX_ELEMENTS", n_elements - 1)
    with pytest.raises(XGenError, match="XML elements"):
        load_document(path)
