"""Loading documents (assistant/documents/) and splitting them (assistant/chunking.py).

Every fixture is made here: Markdown, Python, HTML, UTF-16 and cp1252 text, a PDF written
by hand (3 pages, standard Helvetica, one content stream per page), a DOCX made with
python-docx. Token budgets are checked with the real XGen tokenizer.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import random
import re
import sys
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant import documents
from assistant.chunking import Chunk, split_document
from assistant.documents import Document, html_to_text, load_document, load_stdin
from assistant.documents import load as load_module
from models.errors import XGenError
from models.tokenizer import XGenTokenizer

# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def count():
    encode = XGenTokenizer(allow_download=False).encoding.encode_ordinary
    return lambda s: len(encode(s))


def write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: a content stream per page drawing lines in Helvetica."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    page_ids = [4 + 2 * k for k in range(n)]
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in page_ids)}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for k, lines in enumerate(pages):
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"] + [f"({esc(s)}) Tj T*" for s in lines]
        stream = "\n".join(ops + ["ET"]).encode("latin-1")
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
            f"<< /Font << /F1 3 0 R >> >> /Contents {page_ids[k] + 1} 0 R >>".encode()
        )
        objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


PDF_PAGES = [
    ["Quarterly report, page one.", "Revenue grew in every region."],
    ["Page two covers the costs.", "Salaries (mostly) and rent."],
    ["Page three: the outlook is good."],
]


@pytest.fixture
def pdf_bytes() -> bytes:
    return make_pdf(PDF_PAGES)


def make_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("Project Falcon", level=1)
    d.add_paragraph("The budget was approved in March.")
    table = d.add_table(rows=2, cols=2)
    for (r, c), value in {(0, 0): "Item", (0, 1): "Cost", (1, 0): "Servers", (1, 1): "12,000"}.items():
        table.cell(r, c).text = value
    d.add_paragraph("Deadline: the end of Q3 — no extension.")
    d.save(path)
    return path


def check_chunks(doc: Document, chunks: list[Chunk], max_tokens: int, count) -> None:
    """Exact cover in order, non-empty, each within budget by a real count."""
    assert chunks or not doc.text
    pos = 0
    for c in chunks:
        assert c.document is doc
        assert c.start == pos, f"gap or overlap at {pos}"
        assert c.end > c.start
        assert c.n_tokens == count(c.text) <= max_tokens, (c.label, c.n_tokens)
        pos = c.end
    assert pos == len(doc.text)
    assert "".join(c.text for c in chunks) == doc.text


PARAGRAPH_END = re.compile(r"\n(?:[^\S\n]*\n)+")  # blank line(s); the next line starts the paragraph


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """Blank-line separated paragraphs (each with its trailing blank lines), independently."""
    edges = [0] + [m.end() for m in PARAGRAPH_END.finditer(text) if m.end() < len(text)] + [len(text)]
    return list(zip(edges, edges[1:]))


def text_doc(text: str, name: str = "t.txt", kind: str = "text") -> Document:
    return Document(source=name, name=name, kind=kind, text=text, sha256="")


@pytest.fixture(scope="session")
def prose() -> str:
    """~300k characters of real English prose: the Python reference's paragraphs, repeated."""
    topics = pytest.importorskip("pydoc_data.topics").topics
    paragraphs = []
    for key in sorted(topics):
        for para in topics[key].split("\n\n"):
            para = para.strip("\n")
            # prose, not code samples or tables
            if 200 <= len(para) <= 1500 and para[:1].isalpha() and "  " not in para.strip():
                paragraphs.append(para)
    assert len(paragraphs) > 100
    out, i = [], 0
    total = 0
    while total < 300_000:
        out.append(paragraphs[i % len(paragraphs)])
        total += len(out[-1]) + 2
        i += 1
    return "\n\n".join(out) + "\n"


def stdlib_module_path() -> Path:
    import sysconfig

    lib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("_pydecimal.py", "typing.py", "inspect.py"):
        if (lib / name).is_file():
            return lib / name
    pytest.skip("no large standard library module found")


# ---------------------------------------------------------------------------------------
# Loading each format
# ---------------------------------------------------------------------------------------


def test_markdown(tmp_path):
    body = "# Title\n\nSome *emphasis* and a [link](x).\n\n- item one\n- item two\n"
    path = write(tmp_path, "notes.md", body)
    doc = load_document(path)
    assert (doc.kind, doc.name, doc.source, doc.text) == ("markdown", "notes.md", str(path), body)
    assert doc.sha256 == hashlib.sha256(body.encode()).hexdigest()
    assert load_document(write(tmp_path, "guide.rst", "Guide\n=====\n\nText.\n")).kind == "markdown"
    assert load_document(write(tmp_path, "plain.txt", "x\n")).kind == "text"
    assert load_document(write(tmp_path, "README", "no extension\n")).kind == "text"


def test_python_source_is_code_and_crlf_is_normalised(tmp_path):
    source = "def f(x):\r\n    return x + 1\r\n\r\nclass A:\r\n    pass\r\n"
    doc = load_document(write(tmp_path, "mod.py", source))
    assert doc.kind == "code"
    assert doc.text == source.replace("\r\n", "\n")
    assert doc.sha256 == hashlib.sha256(source.encode()).hexdigest()  # of the raw bytes
    for name in ("main.rs", "App.tsx", "query.sql", "Makefile", "config.yaml", "x.c"):
        assert load_document(write(tmp_path, name, "a = 1\n")).kind == "code", name


HTML = """<!DOCTYPE html>
<html><head><title>Head title</title>
<style>body { color: red }</style>
<script>var s = "<p>not text</p>"; if (a < b) {}</script>
</head>
<body>
<h1>Caf&eacute; &amp; Bar</h1>
<p>Fish &lt;&gt; chips&nbsp;today.   Many
   spaces &#8212; collapsed.</p>
<div>A <b>bold</b> word<br>after a break</div>
<ul><li>first</li><li>second</li></ul>
<table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td>31</td></tr></table>
<pre>  keep
    indentation</pre>
<noscript>Please enable JavaScript</noscript><style>.inline { margin: 0 }</style>
<script type="module">import("./app.js")</script>
<p>The end&hellip;</p>
</body></html>
"""


def test_html_text(tmp_path):
    doc = load_document(write(tmp_path, "page.html", HTML))
    assert doc.kind == "html"
    text = doc.text
    for gone in ("Head title", "color: red", "var s", "not text", "enable JavaScript", "margin",
                 "app.js", "<", "&amp;"):
        assert gone not in text.replace("Fish <> chips", ""), gone
    lines = text.split("\n")
    assert "# Café & Bar" in lines
    assert "Fish <> chips today. Many spaces — collapsed." in lines
    assert "A bold word" in lines and "after a break" in lines
    assert "- first" in lines and "- second" in lines
    assert "Name | Age" in lines and "Ann | 31" in lines
    assert "  keep\n    indentation" in text
    assert lines[-2] == "The end…" and text.endswith("\n")
    # block elements start paragraphs: blank lines between them, never more than one
    assert "\n\n\n" not in text and "\n\nFish" in text


def test_html_edge_cases(tmp_path):
    # a <head> never closed must not swallow the body
    assert html_to_text("<html><head><title>t</title><body><p>Body text</p>") == "Body text\n"
    # very deep nesting: no recursion, linear time
    t0 = time.perf_counter()
    deep = "<div>" * 100_000 + "deep" + "</div>" * 100_000
    assert html_to_text(deep) == "deep\n"
    assert time.perf_counter() - t0 < 5
    # markup html.parser chokes on still gives text
    assert "abc" in html_to_text("<p>a<![if foo]>b<!x>c</p>")
    # a page with nothing readable is an error, not an empty document
    with pytest.raises(XGenError, match="no readable text"):
        load_document(write(tmp_path, "empty.html", "<html><script>x()</script></html>"))


def test_html_meta_charset(tmp_path):
    page = '<html><head><meta charset="iso-8859-7"></head><body><p>Καλημέρα κόσμε</p></body></html>'
    doc = load_document(write(tmp_path, "greek.htm", page.encode("iso-8859-7")))
    assert doc.text == "Καλημέρα κόσμε\n"


@pytest.mark.parametrize(
    "bom_codec",
    [("\ufeff", "utf-16-le"), ("\ufeff", "utf-16-be"), ("\ufeff", "utf-8"), ("\ufeff", "utf-32-le")],
)
def test_unicode_with_bom(tmp_path, bom_codec):
    bom, codec = bom_codec
    text = "Grüße aus Köln — 東京 and émoji 🎉\r\nsecond line\r\n"
    doc = load_document(write(tmp_path, "u.txt", (bom + text).encode(codec)))
    assert doc.text == text.replace("\r\n", "\n")  # BOM dropped, newlines normalised
    assert doc.line_of(doc.text.index("second")) == 2


def test_utf16_without_bom(tmp_path):
    text = "Plain ASCII saved as UTF-16 by an old editor.\nLine two.\n"
    assert load_document(write(tmp_path, "le.txt", text.encode("utf-16-le"))).text == text


CP1252_TEXT = (
    "Le café où nous déjeunions servait une crème brûlée délicieuse. "
    "À côté, la façade était peinte en rouge ; « c’est déjà vu », disait-il — naïvement.\n"
    "Der Bär läuft über die Straße; Größe zählt. Prix : 5 € (environ).\n"
)


@pytest.mark.parametrize(
    "codec, text",
    [
        ("cp1252", CP1252_TEXT),
        ("cp1251", "Привет, как дела? Это тестовый текст на русском языке, довольно длинный.\n"),
        ("shift_jis", "日本語のテキストです。これはテストです。東京は大きな都市です。\n"),
    ],
)
def test_legacy_encodings(tmp_path, codec, text):
    doc = load_document(write(tmp_path, f"{codec}.txt", text.encode(codec)))
    assert doc.text == text


def test_pdf_pages_and_locations(tmp_path, pdf_bytes):
    doc = load_document(write(tmp_path, "report.pdf", pdf_bytes))
    assert doc.kind == "pdf" and len(doc.pages) == 3 and doc.pages[0] == 0
    for number, lines in enumerate(PDF_PAGES, 1):
        for line in lines:
            i = doc.text.index(line)  # every line was extracted...
            assert doc.page_of(i) == number  # ...and maps to its page
            assert doc.page_of(i + len(line) - 1) == number
            assert doc.text[doc.pages[number - 1]:].startswith(PDF_PAGES[number - 1][0])
    p2 = doc.text.index("Page two")
    p3 = doc.text.index("Page three")
    assert doc.location(p2, p2 + 10) == "report.pdf p.2"
    assert doc.location(0, p3 + 5) == "report.pdf p.1-3"
    assert doc.location(p2, p3) == "report.pdf p.2"  # the blank lines before page 3 don't count
    # a chunk of the PDF is labelled with its pages
    chunk = Chunk(doc, p2, len(doc.text), 0)
    assert chunk.label == "report.pdf p.2-3" and (chunk.first_page, chunk.last_page) == (2, 3)


def test_pdf_pages_that_fail_are_listed_not_dropped_silently(tmp_path, pdf_bytes, monkeypatch):
    from pypdfium2 import PdfTextPage

    real = PdfTextPage.get_text_bounded

    def second_page_fails(page, *args, **kwargs):
        text = real(page, *args, **kwargs)
        if "Page two" in text:
            raise ValueError("bad content stream")
        return text

    monkeypatch.setattr(PdfTextPage, "get_text_bounded", second_page_fails)
    doc = load_document(write(tmp_path, "report.pdf", pdf_bytes))
    assert "Page two" not in doc.text and "Page three" in doc.text
    assert doc.notes == ("report.pdf: 1 of 3 pages could not be read and are left out "
                         "(page 2: bad content stream)",)
    monkeypatch.undo()
    assert load_document(write(tmp_path, "fine.pdf", make_pdf(PDF_PAGES))).notes == ()


def test_pdfs_loaded_from_several_threads_at_once(tmp_path, pdf_bytes):
    """PDFium is not thread-safe: loads from the app's worker threads must take turns."""
    from concurrent.futures import ThreadPoolExecutor

    path = write(tmp_path, "report.pdf", pdf_bytes)
    expected = load_document(path).text
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda _: load_document(path).text, range(40)))
    assert texts == [expected] * 40 and "Page two" in expected


def test_pdf_without_extension_is_sniffed(tmp_path, pdf_bytes):
    doc = load_document(write(tmp_path, "scan0001", pdf_bytes))
    assert doc.kind == "pdf" and "outlook is good" in doc.text
    assert load_document(write(tmp_path, "report.dat", pdf_bytes)).kind == "pdf"


def test_pdf_errors(tmp_path, pdf_bytes):
    from pypdf import PdfReader, PdfWriter

    locked = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes)))
    locked.encrypt("secret", algorithm="RC4-128")
    locked.write(tmp_path / "locked.pdf")
    with pytest.raises(XGenError, match=r"locked\.pdf is an encrypted \(password-protected\) PDF"):
        load_document(tmp_path / "locked.pdf")

    # an owner password only (empty user password) opens without asking
    restricted = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes)))
    restricted.encrypt("", owner_password="owner", algorithm="RC4-128")
    restricted.write(tmp_path / "restricted.pdf")
    assert "Page two" in load_document(tmp_path / "restricted.pdf").text

    blank = PdfWriter()
    for _ in range(2):
        blank.add_blank_page(612, 792)
    blank.write(tmp_path / "scan.pdf")
    with pytest.raises(XGenError, match=r"no extractable text .*2 pages.*scanned\? it needs OCR"):
        load_document(tmp_path / "scan.pdf")

    for name, data in [
        ("garbage.pdf", b"%PDF-1.4\n" + bytes(range(1, 256)) * 8),
        ("truncated.pdf", pdf_bytes[: len(pdf_bytes) // 2]),
    ]:
        with pytest.raises(XGenError, match="not a readable PDF"):
            load_document(write(tmp_path, name, data))
    # Text named .pdf is not "damaged or truncated": it is text (tests/test_documents_odd_files.py).
    with pytest.raises(XGenError, match=r"notpdf\.pdf is not a PDF: it holds plain text"):
        load_document(write(tmp_path, "notpdf.pdf", b"this is not a PDF at all\n"))


def test_docx(tmp_path):
    doc = load_document(make_docx(tmp_path / "falcon.docx"))
    assert doc.kind == "docx"
    assert doc.text == (
        "Project Falcon\n\nThe budget was approved in March.\n\n"
        "Item | Cost\nServers | 12,000\n\nDeadline: the end of Q3 — no extension.\n"
    )
    # found by content when the name says nothing
    assert load_document(write(tmp_path, "upload.bin", (tmp_path / "falcon.docx").read_bytes())).kind == "docx"


def test_docx_errors(tmp_path):
    good = make_docx(tmp_path / "good.docx").read_bytes()
    cases = {
        "random.docx": (b"not a zip file at all", "is not a Word .docx file: it holds plain text"),
        "truncated.docx": (good[: len(good) // 2], "not a readable Word .docx"),
        "old.docx": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), r"old Word \.doc"),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.txt", "a zip, but not a Word document")
    cases["other.docx"] = (buf.getvalue(), "no word/document.xml")
    # a damaged document.xml inside a valid archive
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[:100] if item.filename == "word/document.xml" else data)
    cases["badxml.docx"] = (buf.getvalue(), r"not a readable Word \.docx file \(damaged\)")
    for name, (data, message) in cases.items():
        with pytest.raises(XGenError, match=message):
            load_document(write(tmp_path, name, data))


def test_sniffing_unknown_extensions(tmp_path):
    assert load_document(write(tmp_path, "page.xyz", HTML)).kind == "html"
    assert load_document(write(tmp_path, "notes.xyz", "just some notes <b>not html</b>\n")).kind == "text"


def test_stdin(monkeypatch, pdf_bytes):
    doc = load_stdin(io.BytesIO(b"piped text\nline 2\n"))
    assert (doc.source, doc.kind, doc.text) == ("<stdin>", "text", "piped text\nline 2\n")
    assert load_stdin(io.BytesIO(pdf_bytes)).kind == "pdf"
    assert load_stdin(io.BytesIO(HTML.encode())).kind == "html"
    assert load_stdin(io.StringIO("a text stream\n")).text == "a text stream\n"

    class FakeStdin:
        buffer = io.BytesIO(b"from sys.stdin\n")

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    assert load_stdin().text == "from sys.stdin\n"
    with pytest.raises(XGenError, match="standard input is too large: more than 10 bytes"):
        load_stdin(io.BytesIO(b"x" * 11), max_bytes=10)
    with pytest.raises(XGenError, match="empty"):
        load_stdin(io.BytesIO(b""))


# ---------------------------------------------------------------------------------------
# Errors a user can cause
# ---------------------------------------------------------------------------------------


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


def test_missing_and_folder(tmp_path):
    with pytest.raises(XGenError, match="No such file") as e:
        load_document(tmp_path / "nope.txt")
    assert str(tmp_path / "nope.txt") in one_line_error(e)
    with pytest.raises(XGenError, match="is a folder, not a file") as e:
        load_document(tmp_path)
    one_line_error(e)


def test_unreadable(tmp_path, monkeypatch):
    path = write(tmp_path, "secret.txt", "classified\n")
    path.chmod(0)
    try:
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # root reads anything: simulate it
            def denied(*args, **kwargs):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(load_module, "open_regular", denied)
        with pytest.raises(XGenError, match="Cannot read .*secret.txt: permission denied") as e:
            load_document(path)
        one_line_error(e)
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("empty.txt", b"", "empty.txt is empty"),
        ("blank.md", b"  \n\t\r\n\n   ", "only whitespace"),
        ("bom-only.txt", codecs.BOM_UTF8, "empty"),
        ("nul.txt", b"text\x00with\x00nul\x00bytes" * 20, "binary file.*NUL"),
        ("ctrl.txt", bytes(range(1, 9)) * 50 + b"a few letters", "binary file.*control characters"),
        ("image.txt", b"\x89PNG\r\n\x1a\n" + bytes(64), "PNG image.*OCR"),
        ("archive.dat", b"\x1f\x8b\x08\x00" + bytes(64), "gzip archive"),
        ("random.bin", random.Random(7).randbytes(4096), "binary file"),
    ],
)
def test_bad_content(tmp_path, name, data, message):
    with pytest.raises(XGenError, match=message) as e:
        load_document(write(tmp_path, name, data))
    one_line_error(e)


def test_too_large(tmp_path):
    path = write(tmp_path, "big.txt", "x" * 3 * 2**20)
    with pytest.raises(XGenError, match=r"big\.txt is too large: 3 MB \(the limit is 2 MB\)") as e:
        load_document(path, max_bytes=2 * 2**20)
    one_line_error(e)
    assert len(load_document(path, max_bytes=3 * 2**20).text) == 3 * 2**20


def test_stray_control_characters_and_ansi_colours_are_dropped(tmp_path):
    data = b"\x1b[31mred\x1b[0m alert\nform\x0cfeed kept, bell\x07 dropped\n" + b"padding text " * 20
    doc = load_document(write(tmp_path, "build.log", data))
    assert doc.text.startswith("red alert\nform\x0cfeed kept, bell dropped\n")


# ---------------------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------------------


def test_line_of_matches_counting_newlines():
    path = stdlib_module_path()
    doc = load_document(path)
    text = doc.text
    rng = random.Random(0)
    offsets = [0, len(text) - 1, len(text)] + [rng.randrange(len(text)) for _ in range(300)]
    offsets += [i for i, ch in enumerate(text[:5000]) if ch == "\n"]  # a newline ends its line
    for i in offsets:
        assert doc.line_of(i) == text.count("\n", 0, i) + 1
    # the n-th line's text is where line_of says
    lines = text.split("\n")
    i = text.index("\nclass ") + 1
    assert lines[doc.line_of(i) - 1].startswith("class ")


def test_location_labels():
    doc = text_doc("one\ntwo\n\nthree\nfour\n\n\nfive\n", name="notes.txt")
    three = doc.text.index("three")
    assert doc.location(0, 3) == "notes.txt:1-1"
    assert doc.location(0, len(doc.text)) == "notes.txt:1-8"
    # blank lines around a span are not part of its label
    assert doc.location(doc.text.index("two"), doc.text.index("four")) == "notes.txt:2-4"
    assert doc.location(three, doc.text.index("five")) == "notes.txt:4-5"
    c = Chunk(doc, three, doc.text.index("five"), 0)
    assert (c.label, c.first_line, c.last_line, c.text) == ("notes.txt:4-5", 4, 5, "three\nfour\n\n\n")
    assert "chars=" in repr(doc) and doc.text not in repr(doc)


# ---------------------------------------------------------------------------------------
# Chunking real text
# ---------------------------------------------------------------------------------------


def assert_cuts_prefer_paragraphs(doc: Document, chunks: list[Chunk], max_tokens: int, count) -> int:
    """A chunk may end inside a paragraph only if that paragraph alone is over budget."""
    spans = paragraph_spans(doc.text)
    starts = [a for a, _ in spans]
    import bisect

    inside = 0
    for c in chunks[:-1]:
        k = bisect.bisect_right(starts, c.end) - 1
        a, b = spans[k]
        if a != c.end:  # not at a paragraph boundary
            inside += 1
            assert count(doc.text[a:b]) > max_tokens, f"{c.label} ends inside a small paragraph"
    return inside


def test_split_python_source(count):
    doc = load_document(stdlib_module_path())
    for max_tokens in (1000, 250):
        chunks = split_document(doc, max_tokens, count)
        check_chunks(doc, chunks, max_tokens, count)
        assert_cuts_prefer_paragraphs(doc, chunks, max_tokens, count)
        fill = sum(c.n_tokens for c in chunks) / (len(chunks) * max_tokens)
        assert fill > 0.75, fill
        # labels are the chunks' own lines
        for c in chunks[:5]:
            assert c.label == f"{doc.name}:{c.first_line}-{c.last_line}"
            assert doc.text.split("\n")[c.first_line - 1].strip() == c.text.strip().split("\n")[0].strip()


def test_split_prose_at_paragraphs_and_packs_greedily(prose, count):
    doc = text_doc(prose, "prose.txt")
    max_tokens = 1500
    t0 = time.perf_counter()
    chunks = split_document(doc, max_tokens, count)
    elapsed = time.perf_counter() - t0
    check_chunks(doc, chunks, max_tokens, count)
    # every paragraph is far below the budget: every cut is at a blank line
    assert assert_cuts_prefer_paragraphs(doc, chunks, max_tokens, count) == 0
    for c in chunks[:-1]:
        assert c.text.endswith("\n\n")
    # greedy: no chunk could have taken the next paragraph too
    spans = paragraph_spans(prose)
    ends = {a: b for a, b in spans}
    for c in chunks[:-1]:
        assert count(prose[c.start:ends[c.end]]) > max_tokens, c.label
    fill = sum(c.n_tokens for c in chunks) / (len(chunks) * max_tokens)
    assert fill > 0.9
    assert elapsed < 5, elapsed


def test_split_one_megabyte_quickly(prose, count):
    text = (prose * 4)[:1_000_000]
    doc = text_doc(text, "big.txt")
    timings = {}
    for max_tokens in (6000, 200):
        t0 = time.perf_counter()
        chunks = split_document(doc, max_tokens, count)
        timings[max_tokens] = time.perf_counter() - t0
        check_chunks(doc, chunks, max_tokens, count)
    print(f"\nsplit 1 MB of prose: {timings}")
    assert max(timings.values()) < 10, timings


def test_split_pathological_inputs(count):
    rng = random.Random(1)
    import base64

    cases = {
        "one huge line without spaces": base64.b64encode(rng.randbytes(150_000)).decode(),
        "only newlines": "\n" * 60_000,
        "CJK without spaces or punctuation": "我能吞下玻璃而不伤身体" * 8_000,
        "letters repeated": "a" * 100_000,
        "emoji": "🎉👍🏽" * 20_000,
    }
    for name, text in cases.items():
        doc = text_doc(text, name)
        t0 = time.perf_counter()
        chunks = split_document(doc, 500, count)
        check_chunks(doc, chunks, 500, count)
        assert len(chunks) > 1
        # hard cuts still pack chunks nearly full
        assert min(c.n_tokens for c in chunks[:-1]) >= 0.95 * 500, name
        assert time.perf_counter() - t0 < 5, name


def test_split_levels_sentences_and_words(count):
    # CJK sentences: cut right after 。
    cjk = text_doc("这是一个句子，里面没有空格。" * 3000, "cjk.txt")
    chunks = split_document(cjk, 300, count)
    check_chunks(cjk, chunks, 300, count)
    assert all(c.text.endswith("。") for c in chunks)
    # one long line of English sentences: cut at sentence ends, the space goes with the next
    line = " ".join(f"Sentence number {i} is short but not empty." for i in range(3000))
    doc = text_doc(line, "line.txt")
    chunks = split_document(doc, 256, count)
    check_chunks(doc, chunks, 256, count)
    for c, nxt in zip(chunks, chunks[1:]):
        assert c.text.endswith("empty.") and nxt.text.startswith(" Sentence")
    # words only: cut before a space, never inside a word
    words = text_doc(" ".join(f"word{i % 97}" for i in range(40_000)), "words.txt")
    chunks = split_document(words, 300, count)
    check_chunks(words, chunks, 300, count)
    for c in chunks[1:]:
        assert c.text.startswith(" word")


def test_split_prefers_paragraph_boundary_near_the_end(count):
    # small paragraphs, then a paragraph too big for one chunk (lines only)
    small = "\n\n".join(f"Paragraph {i} is a short one with a few words." for i in range(40))
    big = "\n".join(f"line {i} of a very long paragraph that keeps going" for i in range(600))
    doc = text_doc(small + "\n\n" + big + "\n", "mix.txt")
    n_small = count(small + "\n\n")
    max_tokens = int(n_small / 0.8)  # the small paragraphs fill 80% of a chunk
    chunks = split_document(doc, max_tokens, count)
    check_chunks(doc, chunks, max_tokens, count)
    # the first chunk stops at the blank line rather than taking a few lines of `big`
    assert chunks[0].text == small + "\n\n"
    # inside `big`, cuts are at line ends
    assert all(c.text.endswith("\n") for c in chunks)


def test_split_small_budgets_and_errors(count):
    doc = text_doc("Ünïcödé 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 漢字 🎉\n" * 50)
    chunks = split_document(doc, 4, count)  # any character is at most 4 tokens
    check_chunks(doc, chunks, 4, count)
    assert split_document(text_doc(""), 100, count) == []
    with pytest.raises(ValueError, match="max_tokens"):
        split_document(doc, 0, count)
    with pytest.raises(ValueError, match="too small"):
        split_document(text_doc("𝔘"), 1, count)


def test_pdf_chunks_carry_pages(tmp_path, count):
    pages = [[f"Page {p} line {i} says something useful." for i in range(30)] for p in range(1, 6)]
    doc = load_document(write(tmp_path, "long.pdf", make_pdf(pages)))
    chunks = split_document(doc, 300, count)
    check_chunks(doc, chunks, 300, count)
    for c in chunks:
        first = int(re.search(r"Page (\d+)", c.text).group(1))
        last = int(re.findall(r"Page (\d+)", c.text)[-1])
        expected = f"long.pdf p.{first}" if first == last else f"long.pdf p.{first}-{last}"
        assert c.label == expected


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------

SUFFIXES = [".txt", ".md", ".py", ".html", ".pdf", ".docx", ".bin", ""]
PREFIXES = [b"", b"%PDF-1.4\n", b"PK\x03\x04", codecs.BOM_UTF8, codecs.BOM_UTF16_LE,
            codecs.BOM_UTF32_LE, b"<html><body>", b"\x89PNG\r\n\x1a\n", b"Plain text. "]


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    prefix=st.sampled_from(PREFIXES),
    body=st.one_of(st.binary(max_size=3000),
                   st.text(max_size=1000).map(lambda s: s.encode("utf-8", "surrogatepass"))),
    suffix=st.sampled_from(SUFFIXES),
)
def test_any_bytes_give_a_document_or_a_clean_error(tmp_path, prefix, body, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(prefix + body)
    t0 = time.perf_counter()
    try:
        doc = load_document(path)
    except XGenError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(doc, Document) and doc.text.strip()
        assert doc.kind in documents.KINDS
        doc.text.encode("utf-8")  # always valid Unicode
        assert "\r" not in doc.text
    assert time.perf_counter() - t0 < 2


TEXT_ALPHABET = st.sampled_from(
    list("abcdefghij XYZ.,!?;'\"") + ["\n", "\n\n", "  ", "\t", "é", "ß", "東", "京", "。", "🎉", "\u200b",
                                      "word ", "the ", ". ", "\r"]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(TEXT_ALPHABET, max_size=600),
    max_tokens=st.integers(min_value=4, max_value=80),
)
def test_split_invariants_on_random_text(count, pieces, max_tokens):
    doc = text_doc("".join(pieces))
    chunks = split_document(doc, max_tokens, count)
    check_chunks(doc, chunks, max_tokens, count)
    for c in chunks:
        assert 1 <= c.first_line <= c.last_line <= doc.line_of(len(doc.text))


@given(st.lists(st.sampled_from(["word", " ", "  ", "\n", "\n\n", "\t", "x1", "é", "'s", "!!", "\r\n", " \n"]),
                max_size=200))
@settings(max_examples=300, deadline=None)
def test_counting_in_slices_gives_the_whole_text_count(pieces):
    from assistant.chunking import count_in_slices
    from models.tokenizer import XGenTokenizer

    encode = XGenTokenizer(allow_download=False).encoding.encode_ordinary
    text = "".join(pieces)
    assert count_in_slices(encode, text, slice_chars=7) == len(encode(text))
