"""The text of a PDF, page by page (pypdf), with the offset where each page starts."""

from __future__ import annotations

import io
import logging
import warnings

from assistant.documents.decoding import CONTROL_CHARS, normalize_text
from assistant.documents.errors import one_line
from models.errors import XGenError


class _quiet_pypdf:
    """pypdf logs and warns about every oddity of a damaged file: keep the terminal clean."""

    def __enter__(self):
        self._logger = logging.getLogger("pypdf")
        self._level = self._logger.level
        self._logger.setLevel(logging.CRITICAL)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        self._warnings.__exit__(*exc)
        self._logger.setLevel(self._level)
        return False


def _page_text(raw: str) -> str:
    raw = normalize_text(raw)
    raw = CONTROL_CHARS.sub("", raw)
    return "\n".join(line.rstrip() for line in raw.split("\n")).strip("\n")


def pdf_text(data: bytes, name: str) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
    """The text, each page's start offset in it, and notes on pages that failed to extract."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import DependencyError, FileNotDecryptedError
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise XGenError(f"Cannot read PDF files: pypdf is not installed ({exc})") from None

    damaged = f"{name} is not a readable PDF (damaged or truncated)"
    with _quiet_pypdf():
        try:
            reader = PdfReader(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types for bad files
            raise XGenError(f"{damaged}: {one_line(exc)}") from None
        try:
            encrypted = reader.is_encrypted
        except Exception as exc:  # noqa: BLE001
            raise XGenError(f"{damaged}: {one_line(exc)}") from None
        if encrypted:
            try:
                ok = reader.decrypt("")  # many PDFs only restrict editing: empty user password
            except DependencyError:
                raise XGenError(
                    f"{name} is an encrypted PDF that needs the 'cryptography' package to read "
                    "(AES); or save an unencrypted copy"
                ) from None
            except Exception:  # noqa: BLE001
                ok = 0
            if not ok:
                raise XGenError(
                    f"{name} is an encrypted (password-protected) PDF; "
                    "save an unencrypted copy and load that"
                )
        try:
            pages = reader.pages
            n_pages = len(pages)
        except (FileNotDecryptedError, DependencyError):
            raise XGenError(f"{name} is an encrypted PDF that cannot be opened") from None
        except Exception as exc:  # noqa: BLE001
            raise XGenError(f"{damaged}: {one_line(exc)}") from None
        if n_pages == 0:
            raise XGenError(f"{damaged}: it has no pages")

        texts: list[str] = []
        failed: list[int] = []
        first_error = ""
        for i in range(n_pages):
            try:
                texts.append(_page_text(pages[i].extract_text() or ""))
            except Exception as exc:  # noqa: BLE001 - one bad page must not lose the rest
                failed.append(i + 1)
                first_error = first_error or one_line(exc)
                texts.append("")
        failures = len(failed)

    if not any(t.strip() for t in texts):
        if failures == n_pages:
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
