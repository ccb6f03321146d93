"""A file whose name says PDF or DOCX but whose bytes are something else.

A text file named .pdf used to be called "damaged or truncated": the message now says
what the bytes are (plain text, an image, a PDF named .docx...) and how to read them.
"""

from __future__ import annotations

from assistant.documents.decoding import decode_text
from assistant.documents.kinds import _MAGICS, _is_pdf, _is_zip, _zip_has_docx
from models.errors import XGenError


def mislabelled(data: bytes, name: str, kind: str) -> XGenError | None:
    """The error for a file whose name says PDF or DOCX but whose bytes are something else
    (a text file named .pdf was called "damaged or truncated"), or None if the bytes fit
    the name or are just damaged."""
    expected = {"pdf": "a PDF", "docx": "a Word .docx file"}.get(kind)
    if expected is None:
        return None
    if kind == "pdf" and _is_pdf(data) or kind == "docx" and _is_zip(data):
        return None  # the right format, maybe damaged: the format's reader says how
    if kind == "docx" and data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return None  # an old .doc: docx_text has the message for it
    if kind == "docx" and _is_pdf(data):
        return XGenError(f"{name} is a PDF, not a Word .docx file; rename it to .pdf")
    if kind == "pdf" and _is_zip(data) and _zip_has_docx(data):
        return XGenError(f"{name} is a Word .docx file, not a PDF; rename it to .docx")
    for magic, what in _MAGICS:
        if data.startswith(magic):
            return XGenError(f"{name} is not {expected}: it is {what}")
    try:
        decode_text(data[:65536], name)
    except XGenError:
        return None  # binary without a known signature: a damaged file, as far as we can tell
    return XGenError(f"{name} is not {expected}: it holds plain text; rename it (e.g. to .txt) "
                     "to read it as text")
