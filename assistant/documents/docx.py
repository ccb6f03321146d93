"""The text of a Word .docx file (python-docx): paragraphs and tables in order."""

from __future__ import annotations

import io
import zipfile

from assistant.documents.decoding import CONTROL_CHARS, normalize_text
from assistant.documents.errors import format_size, one_line
from models.errors import XGenError


def docx_text(data: bytes, name: str, max_bytes: int) -> str:
    not_docx = f"{name} is not a readable Word .docx file"
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        raise XGenError(f"{name} is an old Word .doc (or encrypted Office) file, not .docx; "
                        "save it as .docx or PDF")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
            if "word/document.xml" not in names:
                raise XGenError(f"{not_docx}: the archive has no word/document.xml")
            unpacked = sum(i.file_size for i in zf.infolist() if i.filename.startswith("word/"))
    except XGenError:
        raise
    except Exception as exc:  # noqa: BLE001 - BadZipFile, truncated archives...
        raise XGenError(f"{not_docx} (damaged or not a ZIP archive): {one_line(exc)}") from None
    limit = max(10 * max_bytes, 200 * 2**20)
    if unpacked > limit:
        raise XGenError(f"{not_docx}: it unpacks to {format_size(unpacked)} "
                        f"(more than {format_size(limit)})")
    try:
        import docx
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise XGenError(f"Cannot read .docx files: python-docx is not installed ({exc})") from None
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = _docx_blocks(document)
    except Exception as exc:  # noqa: BLE001 - lxml, KeyError, ValueError for damaged parts
        raise XGenError(f"{not_docx} (damaged): {_damage(data, exc)}") from None
    text = "\n\n".join(b for b in blocks if b.strip())
    text = CONTROL_CHARS.sub("", normalize_text(text))
    if not text.strip():
        raise XGenError(f"{name} has no text (the Word document is empty or only images)")
    return text + "\n"


def _damage(data: bytes, exc: Exception) -> str:
    """What is damaged, in the user's terms: lxml's own messages ("AttValue: ' expected,
    line 2, column 1173 (<string>, line 2)") become the part and where its XML breaks."""
    try:
        from lxml import etree
    except ImportError:  # pragma: no cover - python-docx depends on lxml
        return one_line(exc)
    if not isinstance(exc, etree.LxmlError):
        if isinstance(exc, KeyError):  # a part the document needs is missing from the archive
            return f"a part is missing ({one_line(exc).strip(chr(34) + chr(39))})"
        return one_line(exc)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if not info.filename.endswith((".xml", ".rels")):
                    continue
                try:
                    etree.fromstring(zf.read(info), parser)
                except etree.XMLSyntaxError as bad:
                    line, column = bad.position if bad.position else (None, None)
                    at = f" at line {line}, column {column}" if line else ""
                    return f"its part {info.filename} is not well-formed XML{at}"
                except Exception:  # noqa: BLE001 - any other failure to read this part
                    return f"its part {info.filename} cannot be read"
    except Exception:  # noqa: BLE001
        pass
    return "its XML is not what a Word document holds"


def _docx_blocks(document) -> list[str]:
    """Paragraphs and tables in document order; a table row is one line, cells split by |."""
    from docx.table import Table

    blocks: list[str] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = []
            for row in item.rows:
                cells = []
                seen: set[int] = set()
                for cell in row.cells:
                    if id(cell._tc) in seen:  # a merged cell repeats
                        continue
                    seen.add(id(cell._tc))
                    cells.append(" ".join(cell.text.split()))
                if any(cells):
                    rows.append(" | ".join(cells))
            blocks.append("\n".join(rows))
        else:
            blocks.append(item.text)
    return blocks

