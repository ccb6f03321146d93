"""The text of a Word .docx file (python-docx): paragraphs and tables in order."""

from __future__ import annotations

import io
import zipfile

from assistant.documents.decoding import CONTROL_CHARS, normalize_text
from assistant.documents.errors import format_size, one_line
from models.errors import XGenError

# python-docx builds an object per paragraph and cell: 20,000 real paragraphs (1.2 MB of
# text) take it 3.6 s and 140 MB, a million empty ones (a 74 KB "zip bomb") minutes and
# gigabytes. These bounds are checked by a streaming count before it starts; a document
# above them holds far more than an 8K-context model can read (100,000 paragraphs are
# some 6 MB of text) and is better saved as plain text, which is read in windows.
MAX_PARAGRAPHS = 100_000
MAX_ELEMENTS = 2_000_000
WORD_NS = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


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
    too_big = _over_bounds(data)
    if too_big:
        raise XGenError(f"{name} is too large a Word document to read ({too_big}); "
                        "save it as plain text (.txt) and give that instead")
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


class _Count:
    """An lxml parser target that counts elements and paragraphs and stops at the bounds
    (no tree is built, so the count itself takes constant memory)."""

    class Over(Exception):
        pass

    def __init__(self):
        self.elements = self.paragraphs = 0

    def start(self, tag, attrib, nsmap=None):
        self.elements += 1
        if tag == WORD_NS + "p":
            self.paragraphs += 1
            if self.paragraphs > MAX_PARAGRAPHS:
                raise self.Over(f"more than {MAX_PARAGRAPHS:,} paragraphs")
        if self.elements > MAX_ELEMENTS:
            raise self.Over(f"more than {MAX_ELEMENTS:,} XML elements")

    def close(self):
        return None


def _over_bounds(data: bytes) -> str | None:
    """Why word/document.xml is beyond what python-docx should be given, or None. A part
    that is not well-formed is left for python-docx to report as damage."""
    from lxml import etree

    count = _Count()
    parser = etree.XMLParser(target=count, resolve_entities=False, no_network=True, huge_tree=True)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf, zf.open("word/document.xml") as part:
            while chunk := part.read(1 << 16):
                parser.feed(chunk)
            parser.close()
    except _Count.Over as over:
        return str(over)
    except Exception:  # noqa: BLE001 - zlib, zipfile, lxml errors of a damaged part: python-docx reports them
        return None
    return None


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

