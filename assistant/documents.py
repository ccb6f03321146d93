"""Load the user's documents as plain text: text, Markdown, source code, HTML, PDF, DOCX.

``load_document(path)`` / ``load_stdin()`` return a :class:`Document`: the extracted text
plus what is needed to point back into the original (line numbers, PDF pages).
Every problem a user can cause (missing file, a folder, no permission, empty, binary,
too large, an encrypted or damaged PDF, a damaged DOCX, a scanned PDF with no text)
raises :class:`models.errors.XGenError` with a one-line message; bad bytes never give
a traceback.
"""

from __future__ import annotations

import bisect
import codecs
import functools
import hashlib
import io
import logging
import os
import re
import stat
import sys
import warnings
import zipfile
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import BinaryIO

from models.errors import XGenError

DEFAULT_MAX_BYTES = 50 * 2**20
KINDS = ("text", "markdown", "code", "html", "pdf", "docx")
SUPPORTED = "text, Markdown, source code, HTML, PDF and Word .docx"

# ---------------------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """A loaded document: its text and where it came from.

    ``pages`` (PDFs only) holds the character offset in ``text`` where each page starts,
    so ``pages[0] == 0`` and a character offset maps to a page with a bisection.
    """

    source: str  # the path as given, or "<stdin>"
    name: str  # the file name, for display
    kind: str  # one of KINDS
    text: str
    sha256: str  # of the raw bytes
    pages: tuple[int, ...] = ()

    def __repr__(self) -> str:  # the text can be megabytes: never print it whole
        extra = f", pages={len(self.pages)}" if self.pages else ""
        return (
            f"Document(source={self.source!r}, kind={self.kind!r}, "
            f"chars={len(self.text)}{extra}, sha256={self.sha256[:12]!r})"
        )

    @functools.cached_property
    def _newlines(self) -> list[int]:
        # Offsets of every "\n", computed once; line_of is then a bisection.
        return [m.start() for m in re.finditer("\n", self.text)]

    @property
    def n_lines(self) -> int:
        return len(self._newlines) + (0 if self.text.endswith("\n") or not self.text else 1)

    def line_of(self, offset: int) -> int:
        """1-based line of the character at offset (a "\\n" belongs to the line it ends)."""
        offset = min(max(offset, 0), len(self.text))
        return bisect.bisect_left(self._newlines, offset) + 1

    def page_of(self, offset: int) -> int:
        """1-based page of the character at offset (1 for documents without pages)."""
        if not self.pages:
            return 1
        offset = min(max(offset, 0), len(self.text))
        # bisect_right: an empty page shares its start with the next one; the later wins.
        return max(bisect.bisect_right(self.pages, offset), 1)

    def _trimmed(self, start: int, end: int) -> tuple[int, int]:
        """[start, end) without leading/trailing whitespace (unchanged if all whitespace)."""
        start = max(start, 0)
        end = min(end, len(self.text))
        text = self.text
        a, b = start, end
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        return (a, b) if a < b else (start, end)

    def span_lines(self, start: int, end: int) -> tuple[int, int]:
        """First and last line of the text in [start, end), ignoring blank lines around it."""
        a, b = self._trimmed(start, end)
        return self.line_of(a), self.line_of(max(b - 1, a))

    def span_pages(self, start: int, end: int) -> tuple[int, int]:
        a, b = self._trimmed(start, end)
        return self.page_of(a), self.page_of(max(b - 1, a))

    def location(self, start: int, end: int) -> str:
        """Where [start, end) is, for citations: "name:12-30" (lines, "name:7-7" for one)
        or, for PDFs, "name p.3-4" / "name p.3". Blank lines around the span don't count."""
        if self.pages:
            first, last = self.span_pages(start, end)
            return f"{self.name} p.{first}" if first == last else f"{self.name} p.{first}-{last}"
        first, last = self.span_lines(start, end)
        return f"{self.name}:{first}-{last}"


# ---------------------------------------------------------------------------------------
# Kinds
# ---------------------------------------------------------------------------------------

_TEXT_EXT = {"", ".txt", ".text", ".log", ".csv", ".tsv", ".nfo", ".me", ".1st", ".out"}
_MARKDOWN_EXT = {".md", ".markdown", ".mdown", ".mkd", ".rst", ".rest", ".adoc", ".asciidoc",
                 ".org", ".textile", ".wiki"}
_CODE_EXT = set(
    """
    .py .pyi .pyw .pyx .pxd .ipynb .c .h .cc .cpp .cxx .c++ .hpp .hh .hxx .h++ .inl .ipp .cu .cuh
    .m .mm .cs .java .kt .kts .scala .sc .groovy .gradle .go .rs .swift .dart .zig .nim .v .sv
    .svh .vhd .vhdl .js .mjs .cjs .jsx .ts .mts .cts .tsx .vue .svelte .astro .php .rb .rake
    .gemspec .pl .pm .t .lua .r .jl .sh .bash .zsh .ksh .fish .ps1 .psm1 .bat .cmd .sql .css
    .scss .sass .less .styl .json .jsonc .json5 .jsonl .ndjson .yaml .yml .toml .ini .cfg .conf
    .properties .env .xml .xsd .xsl .xslt .svg .plist .proto .thrift .graphql .gql .ex .exs .erl
    .hrl .hs .lhs .ml .mli .fs .fsi .fsx .clj .cljs .cljc .edn .el .lisp .lsp .scm .ss .rkt .tex
    .sty .cls .bib .cmake .mk .mak .make .ninja .bazel .bzl .tf .tfvars .hcl .nix .dockerfile
    .asm .s .f .f90 .f95 .for .pas .pp .d .vb .vbs .awk .sed .tcl .diff .patch .ada .adb .ads
    .cob .cbl .elm .purs .re .rei .sol .wat .glsl .hlsl .vert .frag .ino .sas .stan .prisma
    .lock .gitignore .editorconfig
    """.split()
)
_CODE_NAMES = {"makefile", "gnumakefile", "dockerfile", "containerfile", "jenkinsfile",
               "vagrantfile", "gemfile", "rakefile", "procfile", "justfile", "cmakelists.txt",
               "build", "workspace", "pkgbuild", "snakefile"}
_HTML_EXT = {".html", ".htm", ".xhtml", ".shtml"}


def kind_from_name(name: str) -> str | None:
    """The kind a file name implies, or None when only its content can tell."""
    lower = name.lower()
    if lower in _CODE_NAMES:
        return "code"
    ext = Path(lower).suffix
    if lower.startswith(".") and lower.count(".") == 1:  # ".bashrc", ".gitignore"
        ext = lower if lower in _CODE_EXT else ""
    if ext in _TEXT_EXT:
        return "text"
    if ext in _MARKDOWN_EXT:
        return "markdown"
    if ext in _CODE_EXT:
        return "code"
    if ext in _HTML_EXT:
        return "html"
    if ext == ".pdf":
        return "pdf"
    if ext == ".docx":
        return "docx"
    return None


# Recognisable binary formats, for a more helpful "not a text document" message.
_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (.doc/.xls/.ppt); "
     "save it as .docx or PDF"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image (text in images needs OCR)"),
    (b"\xff\xd8\xff", "a JPEG image (text in images needs OCR)"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image (text in images needs OCR)"),
    (b"MM\x00*", "a TIFF image (text in images needs OCR)"),
    (b"\x1f\x8b", "a gzip archive; extract it first"),
    (b"BZh", "a bzip2 archive; extract it first"),
    (b"\xfd7zXZ\x00", "an xz archive; extract it first"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive; extract it first"),
    (b"Rar!", "a RAR archive; extract it first"),
    (b"\x7fELF", "an executable program"),
    (b"MZ", "a Windows executable"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"{\\rtf", "an RTF document; save it as .docx, PDF or plain text"),
)


def _is_pdf(data: bytes) -> bool:
    # Readers accept junk before the header; a text merely quoting "%PDF-" has no %%EOF.
    return data[:1024].lstrip()[:5] == b"%PDF-" or (b"%PDF-" in data[:1024] and b"%%EOF" in data[-2048:])


def _is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


def _zip_has_docx(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return "word/document.xml" in zf.namelist()
    except Exception:  # noqa: BLE001 - any damage means "not a docx we can open"
        return False


_HTML_SNIFF = re.compile(
    r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]|<meta\s[^>]*charset|<title>", re.I
)


def _looks_like_html(text: str) -> bool:
    head = text[:4096].lstrip("\ufeff \t\r\n")
    return head.startswith("<") and _HTML_SNIFF.search(head) is not None


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def _format_size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"  # pragma: no cover


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _too_large(label: str, size: int | None, max_bytes: int) -> XGenError:
    what = f"{_format_size(size)}" if size is not None else f"more than {_format_size(max_bytes)}"
    return XGenError(
        f"{label} is too large: {what} (the limit is {_format_size(max_bytes)}); "
        "split it into smaller files"
    )


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
    except FileNotFoundError:
        raise XGenError(f"No such file: {label}") from None
    except NotADirectoryError:
        raise XGenError(f"No such file: {label} (a part of the path is not a folder)") from None
    except PermissionError:
        raise XGenError(f"Cannot read {label}: permission denied") from None
    except OSError as exc:
        raise XGenError(f"Cannot read {label}: {exc.strerror or _one_line(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise XGenError(f"{label} is a folder, not a file; name a document inside it")
    if stat.S_ISREG(st.st_mode) and st.st_size > max_bytes:
        raise _too_large(label, st.st_size, max_bytes)
    try:
        with open(p, "rb") as f:
            # A pipe or device has no size: read one byte past the limit to notice.
            data = f.read(max_bytes + 1)
    except PermissionError:
        raise XGenError(f"Cannot read {label}: permission denied") from None
    except IsADirectoryError:
        raise XGenError(f"{label} is a folder, not a file; name a document inside it") from None
    except OSError as exc:
        raise XGenError(f"Cannot read {label}: {exc.strerror or _one_line(exc)}") from None
    if len(data) > max_bytes:
        raise _too_large(label, None if not stat.S_ISREG(st.st_mode) else len(data), max_bytes)
    return document_from_bytes(data, source=source, name=p.name or source, max_bytes=max_bytes)


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
        raise XGenError(f"Cannot read standard input: {exc.strerror or _one_line(exc)}") from None
    if isinstance(data, str):  # a text stream (e.g. io.StringIO)
        data = data.encode("utf-8", "surrogatepass")
    if data is None:
        data = b""
    if len(data) > max_bytes:
        raise _too_large("standard input", None, max_bytes)
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
        raise _too_large(name, len(data), max_bytes)
    if not data:
        raise XGenError(f"{name} is empty")
    if kind is None:
        kind = kind_from_name(name) if source != "<stdin>" else None
        if kind is None or kind == "text":
            # unknown or no extension (or a mislabelled .txt): the content decides
            kind = _sniff(data, html=kind is None)
    if kind not in KINDS:
        raise ValueError(f"unknown document kind {kind!r}")

    pages: tuple[int, ...] = ()
    if kind == "pdf":
        text, pages = _pdf_text(data, name)
    elif kind == "docx":
        text = _docx_text(data, name, max_bytes)
    else:
        text = _decode_text(data, name, html=kind == "html")
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
    )


def _sniff(data: bytes, html: bool = True) -> str:
    if _is_pdf(data):
        return "pdf"
    if _is_zip(data) and _zip_has_docx(data):
        return "docx"
    if not html:
        return "text"
    head = data[:4096]
    if head.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        probe = head.decode("utf-16" if not head.startswith(codecs.BOM_UTF8) else "utf-8-sig",
                            errors="ignore")
    else:
        probe = head.decode("utf-8", errors="ignore") if b"\0" not in head else ""
    if probe and _looks_like_html(probe):
        return "html"
    return "text"


# ---------------------------------------------------------------------------------------
# Text decoding
# ---------------------------------------------------------------------------------------

_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# C0/C1 control characters other than tab, newline, vertical tab, form feed, carriage return
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-9;:?<=>]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_MAX_CONTROL_FRACTION = 0.01
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)


def _binary_error(name: str, data: bytes, why: str) -> XGenError:
    for magic, what in _MAGICS:
        if data.startswith(magic):
            return XGenError(f"{name} is {what}, not a text document (supported: {SUPPORTED})")
    if _is_zip(data):
        return XGenError(f"{name} is a ZIP archive, not a document (supported: {SUPPORTED})")
    return XGenError(f"{name} looks like a binary file, not text ({why}); supported: {SUPPORTED}")


def _utf16_without_bom(data: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when data looks like mostly-ASCII UTF-16 with no BOM."""
    if len(data) < 4 or len(data) % 2:
        return None
    sample = data[:65536]
    even, odd = sample[0::2], sample[1::2]
    half = len(sample) // 2
    if odd.count(0) >= 0.9 * half and even.count(0) <= 0.01 * half:
        return "utf-16-le"
    if even.count(0) >= 0.9 * half and odd.count(0) <= 0.01 * half:
        return "utf-16-be"
    return None


# Typographic characters cp1252 text really contains (smart quotes, dashes, euro...).
_CP1252_PUNCT = set("’‘“”„‚–—…€•«»°§©®±×·¿¡\u00a0‰†‡™¢£¥µ¶²³¹¼½¾ªº¦¨¯´¸÷¤")
_CP1252_INNER_OK = set("’·-")


_WORD_OR_NON_ASCII = re.compile(r"[^\W\d_]+|[^\x00-\x7f]")


def _plausible_cp1252(sample: str) -> bool:
    """Whether text decoded as cp1252 reads as Western European prose.

    charset-normalizer often names another single-byte code page for short French or
    German text. Text in another script decoded as cp1252 gives whole words of Latin-1
    letters (Cyrillic, Greek) or symbols between letters (Polish ł -> ³), which this rejects.
    One linear pass over words.
    """
    good = bad = 0
    for m in _WORD_OR_NON_ASCII.finditer(sample):
        word = m.group()
        if word.isascii():
            continue
        if word.isalpha():
            n = sum(1 for c in word if c > "\x7f")
            # a word with non-ASCII letters must also hold ASCII ones, or be one letter ("à")
            if len(word) == 1 or n < len(word):
                good += n
            else:
                bad += n
        else:  # one non-ASCII symbol or punctuation
            i = m.start()
            prev_alpha = i > 0 and sample[i - 1].isalpha()
            next_alpha = i + 1 < len(sample) and sample[i + 1].isalpha()
            if word in _CP1252_PUNCT and not (prev_alpha and next_alpha and word not in _CP1252_INNER_OK):
                good += 1
            else:
                bad += 1
    return good > 0 and bad <= 0.02 * (good + bad)


def _best_guess(data: bytes) -> str | None:
    """A decoding of non-UTF-8 bytes: plausible cp1252 first, then charset-normalizer."""
    sample = data[:262_144]
    try:
        text = sample.decode("cp1252")
    except UnicodeDecodeError:
        pass
    else:
        if _plausible_cp1252(text):
            return "cp1252"
    try:
        import charset_normalizer

        best = charset_normalizer.from_bytes(data).best()
    except Exception:  # noqa: BLE001 - a detector failure just means "undecodable"
        return None
    if best is None:
        return None
    encoding = best.encoding
    if codecs.lookup(encoding).name in ("latin-1", "iso8859-1", "iso8859-15"):
        # As browsers do: a Latin-1 guess means windows-1252 (smart quotes, euro...).
        try:
            data.decode("cp1252")
            encoding = "cp1252"
        except UnicodeDecodeError:
            pass
    return encoding


_STRAY_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte that is not UTF-8
_HIGH_BYTES = bytes(range(0x80, 0x100))


def _cp1252_byte(m: re.Match) -> str:
    try:
        return bytes([ord(m.group()) - 0xDC00]).decode("cp1252")
    except UnicodeDecodeError:  # the 5 bytes cp1252 leaves undefined
        return "\ufffd"


def _utf8_with_cp1252_strays(data: bytes) -> str | None:
    """UTF-8 text with some bytes from a legacy editor (a pasted cp1252 paragraph, an
    appended log): each part decoded as what it is. None unless UTF-8 clearly dominates:
    more well-formed non-ASCII UTF-8 characters than stray bytes."""
    text = data.decode("utf-8", errors="surrogateescape")
    strays = len(text) - len(data.decode("utf-8", errors="ignore"))
    ascii_chars = len(data.translate(None, _HIGH_BYTES))
    utf8_chars = len(text) - strays - ascii_chars
    if not strays or utf8_chars < strays:
        return None
    return _STRAY_BYTE.sub(_cp1252_byte, text)


def _normalize_text(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _decode_text(data: bytes, name: str, *, html: bool = False) -> str:
    """Bytes -> str: BOM, then UTF-8, then a best guess; rejects binary data."""
    encoding: str | None = None
    for bom, enc in _BOMS:
        if data.startswith(bom):
            data, encoding = data[len(bom):], enc
            break
    if encoding is None:
        if b"\0" in data:
            encoding = _utf16_without_bom(data)
            if encoding is None:
                raise _binary_error(name, data, "it contains NUL bytes")
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                encoding = "utf-8"
        if encoding is None and html:
            m = _META_CHARSET.search(data[:8192])
            if m:
                try:
                    candidate = codecs.lookup(m.group(1).decode("ascii")).name
                    data.decode(candidate)
                    encoding = "cp1252" if candidate in ("latin-1", "iso8859-1") else candidate
                except (LookupError, UnicodeDecodeError):
                    pass
        if encoding is None:
            mixed = _utf8_with_cp1252_strays(data)
            if mixed is not None:
                return _clean_controls(_normalize_text(mixed), name, data)
            encoding = _best_guess(data)
            if encoding is None:
                raise _binary_error(name, data, "it is not in any text encoding")
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise _binary_error(name, data, f"it is not valid {encoding}") from None
    if not data:
        raise XGenError(f"{name} is empty (it holds only a byte-order mark)")
    try:
        text.encode("utf-8")  # lone surrogates from an odd codec
    except UnicodeEncodeError:
        raise _binary_error(name, data, "it is not in any text encoding") from None
    return _clean_controls(_normalize_text(text), name, data)


def _clean_controls(text: str, name: str, data: bytes) -> str:
    """Reject text full of control characters; drop the few stray ones (and ANSI colours)."""
    if "\x1b" in text:
        text = _ANSI_ESCAPE.sub("", text)
    n_control = len(_CONTROL.findall(text))
    if n_control:
        if n_control > _MAX_CONTROL_FRACTION * len(text):
            if "\0" in text:
                raise _binary_error(name, data, "it contains NUL characters")
            raise _binary_error(name, data, f"{n_control} control characters")
        text = _CONTROL.sub("", text)
    return text


# ---------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------

_SKIP_TAGS = {"script", "style", "head", "template", "noscript", "svg", "math", "iframe",
              "object", "canvas", "select"}
_PARAGRAPH_TAGS = {"p", "pre", "blockquote", "table", "ul", "ol", "dl", "section", "article",
                   "header", "footer", "nav", "aside", "main", "figure", "hr", "form", "fieldset",
                   "address", "details", "h1", "h2", "h3", "h4", "h5", "h6", "body", "html"}
_LINE_TAGS = {"div", "li", "tr", "br", "dt", "dd", "caption", "figcaption", "summary", "option",
              "legend", "thead", "tbody", "tfoot", "center", "textarea"}
_CELL_TAGS = {"td", "th"}
_WS = re.compile(r"\s+")


class _HTMLText(HTMLParser):
    """Readable text from HTML, in one pass and without recursion (any depth is fine)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._skip: list[str] = []  # open elements whose content is dropped
        self._pre = 0
        self._newlines = 2  # trailing newlines in the output (2 = nothing to separate yet)
        self._space = True  # output ends with a space or a line break

    # writing -------------------------------------------------------------------------
    def _break(self, n: int) -> None:
        if self._newlines >= n:
            return
        while self._out and self._out[-1].endswith((" ", "\t")) and not self._pre:
            last = self._out.pop().rstrip(" \t")
            if last:
                self._out.append(last)
                break
        self._out.append("\n" * (n - self._newlines))
        self._newlines = n
        self._space = True

    def _write(self, s: str) -> None:
        if not s:
            return
        self._out.append(s)
        stripped = s.rstrip("\n")
        trailing = len(s) - len(stripped)
        self._newlines = self._newlines + trailing if not stripped else trailing
        self._space = s[-1].isspace()

    # parser callbacks -----------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs) -> None:
        if self._skip:
            if tag in _SKIP_TAGS:
                self._skip.append(tag)
            elif tag == "body" or (tag in _PARAGRAPH_TAGS | _LINE_TAGS and self._skip == ["head"]):
                self._skip.clear()  # a <head> left open: the body starts here
            else:
                return
            if self._skip:
                return
        if tag in _SKIP_TAGS:
            self._skip.append(tag)
            return
        if tag in _PARAGRAPH_TAGS:
            self._break(2)
            if tag == "pre":
                self._pre += 1
            elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
                self._write("#" * int(tag[1]) + " ")
        elif tag in _LINE_TAGS:
            self._break(1)
            if tag == "li":
                self._write("- ")
        elif tag in _CELL_TAGS:
            if not self._newlines:
                self._write(" | ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt and alt.strip():
                self.handle_data(f" [{alt.strip()}] ")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in _SKIP_TAGS:  # <svg/> has no content to skip
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if tag in _PARAGRAPH_TAGS:
            if tag == "pre" and self._pre:
                self._pre -= 1
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)

    def handle_data(self, data: str) -> None:
        if self._skip or not data:
            return
        if self._pre:
            self._write(data.replace("\r\n", "\n").replace("\r", "\n"))
            return
        data = _WS.sub(" ", data)
        if data.startswith(" ") and self._space:
            data = data[1:]
        if data:
            self._write(data)

    def text(self) -> str:
        return _tidy("".join(self._out))


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n") + "\n" if text.strip() else ""


def html_to_text(html: str) -> str:
    """The readable text of an HTML page: no script/style/head, blocks on their own lines."""
    parser = _HTMLText()
    try:
        # One feed: fed in pieces, a tag or comment left open re-scans everything buffered
        # since it opened at every piece (quadratic: minutes for a 50 MB page).
        parser.feed(html)
        parser.close()
        return parser.text()
    except Exception:  # noqa: BLE001 - html.parser can choke on odd markup: strip tags crudely
        text = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", html)
        text = re.sub(r"(?i)<(br|/p|/div|/li|/tr|/h[1-6]|p|div|li|tr|h[1-6])\b[^>]*>", "\n", text)
        text = unescape(re.sub(r"<[^>]*>", " ", text))
        text = "\n".join(_WS.sub(" ", line).strip() for line in text.split("\n"))
        return _tidy(text)


# ---------------------------------------------------------------------------------------
# PDF
# ---------------------------------------------------------------------------------------


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
    raw = _normalize_text(raw)
    raw = _CONTROL.sub("", raw)
    return "\n".join(line.rstrip() for line in raw.split("\n")).strip("\n")


def _pdf_text(data: bytes, name: str) -> tuple[str, tuple[int, ...]]:
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
            raise XGenError(f"{damaged}: {_one_line(exc)}") from None
        try:
            encrypted = reader.is_encrypted
        except Exception as exc:  # noqa: BLE001
            raise XGenError(f"{damaged}: {_one_line(exc)}") from None
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
            raise XGenError(f"{damaged}: {_one_line(exc)}") from None
        if n_pages == 0:
            raise XGenError(f"{damaged}: it has no pages")

        texts: list[str] = []
        failures = 0
        first_error = ""
        for i in range(n_pages):
            try:
                texts.append(_page_text(pages[i].extract_text() or ""))
            except Exception as exc:  # noqa: BLE001 - one bad page must not lose the rest
                failures += 1
                first_error = first_error or _one_line(exc)
                texts.append("")

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
    return text, tuple(min(s, len(text)) for s in starts)


# ---------------------------------------------------------------------------------------
# DOCX
# ---------------------------------------------------------------------------------------


def _docx_text(data: bytes, name: str, max_bytes: int) -> str:
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
        raise XGenError(f"{not_docx} (damaged or not a ZIP archive): {_one_line(exc)}") from None
    limit = max(10 * max_bytes, 200 * 2**20)
    if unpacked > limit:
        raise XGenError(f"{not_docx}: it unpacks to {_format_size(unpacked)} "
                        f"(more than {_format_size(limit)})")
    try:
        import docx
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise XGenError(f"Cannot read .docx files: python-docx is not installed ({exc})") from None
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = _docx_blocks(document)
    except Exception as exc:  # noqa: BLE001 - lxml, KeyError, ValueError for damaged parts
        raise XGenError(f"{not_docx} (damaged): {_one_line(exc)}") from None
    text = "\n\n".join(b for b in blocks if b.strip())
    text = _CONTROL.sub("", _normalize_text(text))
    if not text.strip():
        raise XGenError(f"{name} has no text (the Word document is empty or only images)")
    return text + "\n"


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

