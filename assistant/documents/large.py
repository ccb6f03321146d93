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
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from assistant.documents.decoding import decode_text
from assistant.documents.errors import too_large
from assistant.documents.kinds import kind_from_name, sniff_kind
from assistant.documents.load import DEFAULT_MAX_BYTES, load_document, open_regular
from assistant.documents.model import Document
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
    """A large text file as successive decoded windows (see module docstring)."""

    def __init__(self, path: Path, *, source: str, size: int, window_bytes: int = WINDOW_BYTES):
        self.path = path
        self.source = source
        self.name = path.name
        self.size = size
        self.window_bytes = window_bytes
        self.sha256: str | None = None  # of the raw bytes, known once windows() has run to the end
        self.notes: tuple[str, ...] = ()  # as Document.notes: a text file loses nothing

    def __repr__(self) -> str:
        return f"LargeTextFile(source={self.source!r}, size={self.size})"

    def windows(self) -> Iterator[tuple[str, int]]:
        """Yield (decoded text, bytes consumed so far) for consecutive windows of the file."""
        digest = hashlib.sha256()
        carry = b""
        consumed = 0
        try:
            with open_regular(self.path, self.source) as f:
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


def open_for_summary(path: str | os.PathLike, *, max_bytes: int | None = None,
                     window_bytes: int | None = None) -> Document | LargeTextFile:
    """A Document when the file fits the loader's limit, else a LargeTextFile of a text file.

    Files over the limit that are not plain text, Markdown or code (PDF, DOCX, HTML, or
    unknown content that is not text) get the loader's size error.
    """
    source = os.fspath(path)
    p = Path(source).expanduser()
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    try:
        st = p.stat()
    except OSError:
        return load_document(source, max_bytes=limit)  # its one-line errors for missing files etc.
    if not stat.S_ISREG(st.st_mode) or st.st_size <= limit:
        return load_document(source, max_bytes=limit)
    kind = kind_from_name(p.name)
    if kind is None or kind == "text":  # the content decides, as for small files
        try:
            with open_regular(p, source) as f:
                head = f.read(65536)
        except OSError as exc:
            raise XGenError(f"Cannot read {source}: {exc.strerror or exc}") from None
        kind = sniff_kind(head, html=kind is None)
    if kind not in STREAMED_KINDS:
        raise too_large(source, st.st_size, limit)
    return LargeTextFile(p, source=source, size=st.st_size, window_bytes=window_bytes or WINDOW_BYTES)
