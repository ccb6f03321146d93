"""Plain-text files too large to load whole, read window by window.

`load_document` refuses files over its size limit because chat and retrieval need the
whole text in memory. Summarization does not: it reads each part once, in order, and
keeps only the partial summaries. A :class:`LargeTextFile` gives it the file as decoded
windows cut after a newline, so memory stays at a few windows whatever the file size.

Each window is decoded by the same rules as a small file (UTF-8, stray cp1252 bytes,
a single-byte guess; binary data is an error). Cutting on b"\\n" is only safe in
encodings where that byte is always a newline, so UTF-16/32 files are not streamed.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import stat
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from assistant.documents.decoding import decode_text
from assistant.documents.errors import too_large
from assistant.documents.kinds import kind_from_name, sniff_kind
from assistant.documents.errors import one_line
from assistant.documents.load import DEFAULT_MAX_BYTES, document_from_bytes, load_document, open_regular
from assistant.documents.mislabel import mislabelled
from assistant.documents.model import Document
from assistant.safetext import shown_name
from models.errors import XGenError

WINDOW_BYTES = 4 << 20
STREAMED_KINDS = ("text", "markdown", "code")
_WIDE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _utf8_cut(data: bytes) -> int:
    """Where to cut data that has no newline: before a UTF-8 sequence it would split."""
    cut = len(data)
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            break
        if byte >= 0xC0:  # a lead byte: cut before it unless its sequence is complete
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if back < need:
                cut = len(data) - back
            break
    if cut > 1 and data[cut - 1] == 0x0D:  # keep a "\r\n" split across windows together
        cut -= 1
    return cut or len(data)


class LargeTextFile:
    """A large text file as successive decoded windows (see module docstring).

    With `reader` (standard input), the bytes come from it instead of `path`, once; its
    `size` is None until windows() has run to the end."""

    def __init__(self, path: Path | None, *, source: str, size: int | None, window_bytes: int = WINDOW_BYTES,
                 reader: BinaryIO | None = None, name: str | None = None):
        self.path = path
        self.source = source
        self.name = name or shown_name(path.name if path is not None else source)
        self.size = size
        self.window_bytes = window_bytes
        self.sha256: str | None = None  # of the raw bytes, known once windows() has run to the end
        self.notes: tuple[str, ...] = ()  # as Document.notes: a text file loses nothing
        self._reader = reader

    def __repr__(self) -> str:
        return f"LargeTextFile(source={self.source!r}, size={self.size})"

    def windows(self) -> Iterator[tuple[str, int]]:
        """Yield (decoded text, bytes consumed so far) for consecutive windows of the file."""
        digest = hashlib.sha256()
        carry = b""
        consumed = 0
        try:
            with (open_regular(self.path, self.source) if self._reader is None else
                  contextlib.nullcontext(self._reader)) as f:
                while True:
                    block = f.read(self.window_bytes)
                    digest.update(block)
                    if not block and not carry:
                        break
                    data = carry + block
                    if consumed == 0 and data.startswith(_WIDE_BOMS):
                        raise XGenError(f"{self.name} is UTF-16/32 text and too large to load whole; "
                                        "save it as UTF-8 to summarize it in parts")
                    if block:
                        cut = data.rfind(b"\n") + 1 or _utf8_cut(data)
                    else:
                        cut = len(data)  # end of file: the rest, newline or not
                    piece, carry = data[:cut], data[cut:]
                    consumed += len(piece)
                    yield decode_text(piece, self.name), consumed
        except OSError as exc:
            raise XGenError(f"Cannot read {self.source}: {exc.strerror or exc}") from None
        self.sha256 = digest.hexdigest()
        if self.size is None:
            self.size = consumed


def over_load_limit(path: str | os.PathLike) -> bool:
    """A regular file over the load limit (only a summary reads it, in parts); anything
    else is left to whoever reads it to explain."""
    return (_regular_size(Path(path)) or 0) > DEFAULT_MAX_BYTES


HEAD_BYTES = 65536


def _regular_size(p: Path) -> int | None:
    """The size of a regular file (or a link to one); None for anything else (missing, a
    folder, a FIFO), which the loader explains."""
    try:
        st = p.stat()
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def first_look(path: str | os.PathLike, *, max_bytes: int | None = None) -> bool:
    """Whether the regular file at `path` is over the load limit (a text file that only a
    summary reads, in parts), from its size and first 64 KiB, so a dialog can tell at once.

    Raises the loader's one-line XGenError when those bytes already show the file cannot
    be read: binary data (an image, an archive, NUL bytes), a PDF named .docx, a format
    over the limit that is not read in parts. What only the whole file shows (a damaged
    PDF) is found when it is read. Not a regular file (missing, a folder): False, and
    whoever reads it says why."""
    source = os.fspath(path)
    p = Path(source).expanduser()
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    size = _regular_size(p)
    if size is None:
        return False
    try:
        with open_regular(p, source) as f:
            head = f.read(HEAD_BYTES)
    except OSError as exc:
        raise XGenError(f"Cannot read {source}: {exc.strerror or exc}") from None
    large = size > limit
    kind = kind_from_name(p.name)
    if kind is None or kind == "text":  # the content decides, as for small files
        kind = sniff_kind(head, html=kind is None)
    if large and kind not in STREAMED_KINDS:
        raise too_large(source, size, limit)
    wrong = mislabelled(head, p.name, kind)
    if wrong is not None:
        raise wrong
    if head and kind not in ("pdf", "docx"):  # text: decoded by the loader's rules (cut whole)
        decode_text(head if len(head) == size else head[:_utf8_cut(head)], p.name, html=kind == "html")
    return large


def open_for_summary(path: str | os.PathLike, *, max_bytes: int | None = None,
                     window_bytes: int | None = None) -> Document | LargeTextFile:
    """A Document when the file fits the loader's limit, else a LargeTextFile of a text file.

    Files over the limit that are not plain text, Markdown or code (PDF, DOCX, HTML, or
    unknown content that is not text) get the loader's size error; binary data in the
    first bytes, the loader's binary error.
    """
    source = os.fspath(path)
    p = Path(source).expanduser()
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    size = _regular_size(p)
    if size is None or size <= limit:
        return load_document(source, max_bytes=limit)  # and its one-line errors for missing files etc.
    first_look(source, max_bytes=limit)  # its errors: not text, binary data
    return LargeTextFile(p, source=source, size=size, window_bytes=window_bytes or WINDOW_BYTES)


class _HeadThenRest:
    """A binary reader: the pieces already read from a stream, then the rest of it.
    Each piece is dropped once read, so the head does not stay in memory."""

    def __init__(self, pieces: list[bytes], rest: BinaryIO):
        self._pieces = deque(pieces)
        self._rest = rest

    def read(self, n: int) -> bytes:
        out: list[bytes] = []
        while n > 0 and self._pieces:
            piece = self._pieces.popleft()
            if len(piece) > n:
                self._pieces.appendleft(piece[n:])
                piece = piece[:n]
            out.append(piece)
            n -= len(piece)
        if n > 0:
            more = self._rest.read(n)
            if more:
                out.append(more)
        return b"".join(out)


def open_stdin_for_summary(stream: BinaryIO | None = None, *, max_bytes: int | None = None,
                           window_bytes: int | None = None) -> Document | LargeTextFile:
    """Standard input for a summary, like a file: a Document when it fits the loader's
    limit, else (plain text) a LargeTextFile read window by window; other kinds over the
    limit get the size error. Only the limit's worth is read before deciding."""
    if stream is None:
        if sys.stdin is None:
            raise XGenError("There is no standard input to read a document from")
        stream = getattr(sys.stdin, "buffer", sys.stdin)
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    pieces: list[bytes] = []
    held = 0
    try:
        while held <= limit:
            piece = stream.read(min(1 << 20, limit + 1 - held))
            if isinstance(piece, str):  # a text stream (e.g. io.StringIO)
                piece = piece.encode("utf-8", "surrogatepass")
            if not piece:
                break
            pieces.append(piece)
            held += len(piece)
    except OSError as exc:
        raise XGenError(f"Cannot read standard input: {exc.strerror or one_line(exc)}") from None
    if held <= limit:
        return document_from_bytes(b"".join(pieces), source="<stdin>", name="<stdin>", max_bytes=limit)
    head = pieces[0][:65536] if pieces else b""
    if sniff_kind(head) not in STREAMED_KINDS:
        raise too_large("standard input", None, limit)
    return LargeTextFile(None, source="<stdin>", name="<stdin>", size=None, reader=_HeadThenRest(pieces, stream),
                         window_bytes=window_bytes or WINDOW_BYTES)
