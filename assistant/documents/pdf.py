"""The text of a PDF, page by page (PDFium, through pypdfium2), with the offset where each
page starts.

PDFium (Chrome's PDF engine) reads pages 3.6-5.3x faster than pypdf did here
(bench/RESULTS.md), opens files whose only protection is an owner password, and decrypts
AES itself. It is not thread-safe: one PDF is read at a time per process (`_PDFIUM`), so
two threads of the app loading PDFs at once take turns instead of crashing.
"""

from __future__ import annotations

import threading

from assistant.documents.decoding import CONTROL_CHARS, normalize_text
from assistant.documents.errors import one_line
from models.errors import XGenError

# PDFium's global state must not be entered by two threads at once (pypdfium2's docs).
_PDFIUM = threading.Lock()


def _page_text(raw: str) -> str:
    raw = normalize_text(raw)
    raw = CONTROL_CHARS.sub("", raw)
    return "\n".join(line.rstrip() for line in raw.split("\n")).strip("\n")


def _open(pdfium, data: bytes, name: str, damaged: str):
    from pypdfium2.raw import FPDF_ERR_PASSWORD, FPDF_ERR_SECURITY

    try:
        return pdfium.PdfDocument(data)  # tries the empty user password by itself
    except pdfium.PdfiumError as exc:
        if exc.err_code == FPDF_ERR_PASSWORD:
            raise XGenError(f"{name} is an encrypted (password-protected) PDF; "
                            "save an unencrypted copy and load that") from None
        if exc.err_code == FPDF_ERR_SECURITY:
            raise XGenError(f"{name} is an encrypted PDF that cannot be opened (unsupported "
                            "security handler); save an unencrypted copy and load that") from None
        raise XGenError(f"{damaged}: {one_line(exc)}") from None


def _read_pages(pdf) -> tuple[list[str], list[int], str]:
    """Each page's text ("" for a page that failed), the failed pages (1-based), and the
    first failure's message."""
    texts: list[str] = []
    failed: list[int] = []
    first_error = ""
    for i in range(len(pdf)):
        try:
            page = pdf[i]
            try:
                textpage = page.get_textpage()
                try:
                    texts.append(_page_text(textpage.get_text_bounded() or ""))
                finally:
                    textpage.close()
            finally:
                page.close()
        except Exception as exc:  # noqa: BLE001 - one bad page must not lose the rest
            failed.append(i + 1)
            first_error = first_error or one_line(exc)
            texts.append("")
    return texts, failed, first_error


def pdf_text(data: bytes, name: str) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
    """The text, each page's start offset in it, and notes on pages that failed to extract."""
    try:
        import pypdfium2 as pdfium
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise XGenError(f"Cannot read PDF files: pypdfium2 is not installed ({exc})") from None

    damaged = f"{name} is not a readable PDF (damaged or truncated)"
    with _PDFIUM:
        pdf = _open(pdfium, data, name, damaged)
        try:
            n_pages = len(pdf)
            if n_pages == 0:
                raise XGenError(f"{damaged}: it has no pages")
            texts, failed, first_error = _read_pages(pdf)
        finally:
            pdf.close()

    if not any(t.strip() for t in texts):
        if len(failed) == n_pages:
            raise XGenError(f"{damaged}: {first_error}")
        raise XGenError(
            f"{name} has no extractable text in its {n_pages} page"
            f"{'s' if n_pages != 1 else ''} (scanned? it needs OCR first, e.g. ocrmypdf)"
        )
    starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for t in texts:
        starts.append(offset)
        if t:
            parts.append(t + "\n\n")
            offset += len(t) + 2
    text = "".join(parts).rstrip("\n") + "\n"
    notes: tuple[str, ...] = ()
    if failed:
        listed = ", ".join(map(str, failed[:20])) + (f" and {len(failed) - 20} more" if len(failed) > 20 else "")
        notes = (f"{name}: {len(failed)} of {n_pages} pages could not be read and are left out "
                 f"(page{'s' if len(failed) != 1 else ''} {listed}: {first_error})",)
    return text, tuple(min(s, len(text)) for s in starts), notes
