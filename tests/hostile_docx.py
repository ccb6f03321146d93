"""DOCX "zip bombs": a real Word document whose body is rewritten with a great many tiny
elements. XML this repetitive compresses about 100 to 1, so a million empty paragraphs
fit in some 70 KB, far under every size limit, while python-docx would build an object
for each of them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path


def docx_with_body(template: bytes, body: bytes) -> bytes:
    """The document `template` (a .docx) with `body` put at the start of its body."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(template)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "word/document.xml":
                data = data.replace(b"<w:body>", b"<w:body>" + body, 1)
            dst.writestr(info.filename, data)
    return out.getvalue()


def empty_paragraphs(template: bytes, n: int) -> bytes:
    return docx_with_body(template, b"<w:p/>" * n)


def empty_runs(template: bytes, n: int) -> bytes:
    """One paragraph of `n` empty runs: few paragraphs, many elements."""
    return docx_with_body(template, b"<w:p>" + b"<w:r/>" * n + b"</w:p>")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
