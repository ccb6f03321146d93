"""Load the user's documents as plain text: text, Markdown, source code, HTML, PDF, DOCX.

``load_document(path)`` / ``load_stdin()`` return a :class:`Document`: the extracted text
plus what is needed to point back into the original (line numbers, PDF pages).
Every problem a user can cause (missing file, a folder, no permission, empty, binary,
too large, an encrypted or damaged PDF, a damaged DOCX, a scanned PDF with no text)
raises :class:`models.errors.XGenError` with a one-line message; bad bytes never give
a traceback.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from assistant.documents.decoding import decode_text
from assistant.documents.docx import docx_text
from assistant.documents.errors import one_line, too_large
from assistant.documents.html import html_to_text
from assistant.documents.kinds import KINDS, kind_from_name, sniff_kind
from assistant.documents.mislabel import mislabelled
from assistant.documents.model import Document
from assistant.documents.pdf import pdf_text
from assistant.safetext import shown_name
from models.errors import XGenError

DEFAULT_MAX_BYTES = 50 * 2**20


def _os_error(exc: OSError, label: str) -> XGenError:
    """One line for what stat() or open() said about a path the user gave."""
    if isinstance(exc, FileNotFoundError):
        return XGenError(f"No such file: {label}")
    if isinstance(exc, NotADirectoryError):
        return XGenError(f"No such file: {label} (a part of the path is not a folder)")
    if isinstance(exc, PermissionError):
        return XGenError(f"Cannot read {label}: permission denied")
    if isinstance(exc, IsADirectoryError):
        return XGenError(f"{label} is a folder, not a file; name a document inside it")
    return XGenError(f"Cannot read {label}: {exc.strerror or one_line(exc)}")


def load_document(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """Read and extract the text of the file at path.

    The kind comes from the extension (see kind_from_name) and, for unknown
    extensions, from the content. Raises XGenError for anything the user must fix.
    """
    source = os.fspath(path)
    p = Path(source).expanduser()
    label = source
    try:
        st = p.stat()
    except OSError as exc:
        raise _os_error(exc, label) from None
    if stat.S_ISDIR(st.st_mode):
        raise XGenError(f"{label} is a folder, not a file; name a document inside it")
    if not stat.S_ISREG(st.st_mode):
        raise not_a_regular_file(label, st.st_mode)
    if st.st_size > max_bytes:
        raise too_large(label, st.st_size, max_bytes)
    try:
        with open_regular(p, label) as f:
            # The file may grow after the stat: read one byte past the limit to notice.
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise _os_error(exc, label) from None
    if len(data) > max_bytes:  # it grew after the stat
        raise too_large(label, len(data), max_bytes)
    return document_from_bytes(data, source=source, name=shown_name(p.name or source), max_bytes=max_bytes)


def not_a_regular_file(label: str, mode: int) -> XGenError:
    """Only regular files (or links to one) are read: opening a FIFO with no writer would
    wait forever, and a device never ends."""
    what = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return XGenError(f"{label} is {what}, not a regular file; only files are read "
                     f"(for piped text, give - and redirect it: - < {label})")


def open_regular(path: Path, label: str) -> BinaryIO:
    """Open a regular file for reading without ever blocking: O_NONBLOCK keeps open() from
    waiting for a writer if a FIFO took the file's place after it was checked."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise not_a_regular_file(label, mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def load_stdin(stream: BinaryIO | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """Read a document piped on standard input (stream defaults to sys.stdin.buffer).

    The kind is found from the content (PDF, DOCX, HTML, else text).
    """
    if stream is None:
        stdin = sys.stdin
        if stdin is None:
            raise XGenError("There is no standard input to read a document from")
        stream = getattr(stdin, "buffer", stdin)
    try:
        data = stream.read(max_bytes + 1)
    except OSError as exc:
        raise XGenError(f"Cannot read standard input: {exc.strerror or one_line(exc)}") from None
    if isinstance(data, str):  # a text stream (e.g. io.StringIO)
        data = data.encode("utf-8", "surrogatepass")
    if data is None:
        data = b""
    if len(data) > max_bytes:
        raise too_large("standard input", None, max_bytes)
    return document_from_bytes(data, source="<stdin>", name="<stdin>", max_bytes=max_bytes)


def document_from_bytes(
    data: bytes,
    *,
    source: str,
    name: str,
    kind: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Document:
    """Extract a Document from raw bytes; kind None means from the name, then the content."""
    if len(data) > max_bytes:
        raise too_large(name, len(data), max_bytes)
    if not data:
        raise XGenError(f"{name} is empty")
    if kind is None:
        kind = kind_from_name(name) if source != "<stdin>" else None
        if kind is None or kind == "text":
            # unknown or no extension (or a mislabelled .txt): the content decides
            kind = sniff_kind(data, html=kind is None)
    if kind not in KINDS:
        raise ValueError(f"unknown document kind {kind!r}")

    wrong = mislabelled(data, name, kind)
    if wrong is not None:
        raise wrong
    pages: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()
    if kind == "pdf":
        text, pages, notes = pdf_text(data, name)
    elif kind == "docx":
        text = docx_text(data, name, max_bytes)
    else:
        text = decode_text(data, name, html=kind == "html")
        if kind == "html":
            text = html_to_text(text)
            if not text.strip():
                raise XGenError(f"{name} has no readable text (the HTML holds only markup)")
        elif not text.strip():
            raise XGenError(f"{name} has no text: it holds only whitespace")
    return Document(
        source=source,
        name=name,
        kind=kind,
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        pages=pages,
        notes=notes,
    )
