"""What kind of document a file is: from its name, else from its first bytes.

Also the message for bytes that are no text document at all, naming the binary format
when it is a recognisable one.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from pathlib import Path

from models.errors import XGenError

KINDS = ("text", "markdown", "code", "html", "pdf", "docx")
SUPPORTED = "text, Markdown, source code, HTML, PDF and Word .docx"

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
    dot = lower.rfind(".")  # Path(lower).suffix, at a fraction of its cost (a walk asks per file)
    ext = lower[dot:] if 0 < dot < len(lower) - 1 else ""
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


def sniff_kind(data: bytes, html: bool = True) -> str:
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


def binary_error(name: str, data: bytes, why: str) -> XGenError:
    for magic, what in _MAGICS:
        if data.startswith(magic):
            return XGenError(f"{name} is {what}, not a text document (supported: {SUPPORTED})")
    if _is_zip(data):
        return XGenError(f"{name} is a ZIP archive, not a document (supported: {SUPPORTED})")
    return XGenError(f"{name} looks like a binary file, not text ({why}); supported: {SUPPORTED}")

