"""Documents that are not regular files (FIFOs, devices, sockets) or not what their name says
(text named .pdf, a .docx named .pdf, a .docx with broken XML): one clear line, never a hang."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest

from models.errors import XGenError
from tests.cli_helpers import one_error_line, xgen

# -- FIFOs, devices and sockets as documents ---------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("command", [["summarize"], ["ask", "-q", "What failed?"]])
def test_fifo_without_a_writer_is_refused_not_waited_on(tmp_path, command):
    fifo = tmp_path / "notes.txt"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    out = xgen(command[0], str(fifo), *command[1:], "--model", "demo", env={"XGEN_HOME": str(tmp_path / "h")},
               timeout=60)
    assert time.monotonic() - t0 < 30
    assert out.returncode == 1
    assert one_error_line(out.stderr).startswith(f"error: {fifo} is a FIFO (named pipe), not a regular file")


def test_devices_and_sockets_are_not_read(tmp_path):
    from assistant.documents import load_document, open_for_summary

    sock_path = tmp_path / "s.txt"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    for path, what in (("/dev/zero", "a device"), (sock_path, "a socket")):
        for load in (load_document, open_for_summary):
            with pytest.raises(XGenError, match=f"is {what}, not a regular file"):
                load(path)


def test_a_link_to_a_regular_file_is_still_read(tmp_path):
    from assistant.documents import load_document

    real = tmp_path / "real.txt"
    real.write_text("The cooling unit failed.\n")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    assert load_document(link).text == "The cooling unit failed.\n"


def test_a_fifo_swapped_in_after_the_check_does_not_block(tmp_path, monkeypatch):
    """Between stat() and open() the file became a FIFO: opening must not wait for a writer."""
    from assistant.documents import load

    fifo = tmp_path / "swapped.txt"
    os.mkfifo(fifo)
    real_stat = Path.stat

    def looks_regular(self, *args, **kwargs):
        st = real_stat(self, *args, **kwargs)
        if self == fifo:
            return os.stat_result((stat.S_IFREG | 0o644, *st[1:6], 10, *st[7:]))
        return st

    monkeypatch.setattr(Path, "stat", looks_regular)
    t0 = time.monotonic()
    with pytest.raises(XGenError, match="is a FIFO"):
        load.load_document(fifo)
    assert time.monotonic() - t0 < 5


# -- files whose name says PDF or DOCX but whose bytes do not -----------------------------


@pytest.mark.parametrize("name, data, message", [
    ("notes.pdf", b"Minutes of the meeting\nThe budget was approved.\n",
     "notes.pdf is not a PDF: it holds plain text; rename it (e.g. to .txt) to read it as text"),
    ("notes.docx", "Procès-verbal de la réunion\n".encode("cp1252"),
     "notes.docx is not a Word .docx file: it holds plain text; rename it (e.g. to .txt) to read it as text"),
    ("scan.pdf", b"\x89PNG\r\n\x1a\n" + bytes(200),
     "scan.pdf is not a PDF: it is a PNG image (text in images needs OCR)"),
    ("report.docx", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n", "report.docx is a PDF, not a Word .docx file; "
     "rename it to .pdf"),
])
def test_a_file_that_is_not_what_its_name_says(tmp_path, name, data, message):
    from assistant.documents import load_document

    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(XGenError) as caught:
        load_document(path)
    assert str(caught.value) == message
    assert "damaged" not in str(caught.value)


def test_a_docx_named_pdf_is_named_as_such(tmp_path):
    from assistant.documents import load_document
    from tests.test_documents import make_docx

    path = make_docx(tmp_path / "real.docx").rename(tmp_path / "real.pdf")
    with pytest.raises(XGenError, match=r"^real\.pdf is a Word \.docx file, not a PDF; rename it to \.docx$"):
        load_document(path)


def test_text_named_pdf_from_the_command_line(tmp_path):
    path = tmp_path / "notes.pdf"
    path.write_text("Minutes of the meeting\n")
    out = xgen("summarize", str(path), "--model", "demo", env={"XGEN_HOME": str(tmp_path / "h")})
    assert out.returncode == 1
    assert one_error_line(out.stderr) == ("error: notes.pdf is not a PDF: it holds plain text; rename it "
                                          "(e.g. to .txt) to read it as text")


def _docx_with(tmp_path: Path, member: str, change) -> Path:
    import io
    import zipfile

    from tests.test_documents import make_docx

    raw = make_docx(tmp_path / "source.docx").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            content = src.read(item)
            dst.writestr(item.filename, change(content) if item.filename == member else content)
    path = tmp_path / "bad.docx"
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("member, change", [
    ("word/document.xml", lambda c: c[: len(c) // 2]),
    ("word/document.xml", lambda c: c.replace(b"<w:body>", b"<w:body><<")),
    ("word/document.xml", lambda c: c.replace(b"budget", b"&undefined;")),
    ("word/styles.xml", lambda c: c[:100]),
    ("[Content_Types].xml", lambda c: c[:50]),
    ("word/_rels/document.xml.rels", lambda c: c[:50]),
], ids=["truncated", "bad-tag", "undefined-entity", "styles", "content-types", "rels"])
def test_docx_with_bad_xml_names_the_part_not_lxml_internals(tmp_path, member, change):
    from assistant.documents import load_document

    with pytest.raises(XGenError) as caught:
        load_document(_docx_with(tmp_path, member, change))
    message = str(caught.value)
    assert message.startswith(f"bad.docx is not a readable Word .docx file (damaged): its part {member} "
                              "is not well-formed XML at line "), message
    for internal in ("<string>", "AttValue", "StartTag", "Entity '", "standalone accepts"):
        assert internal not in message

