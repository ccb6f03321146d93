"""Bytes to text: byte-order marks, UTF-8, UTF-8 with stray cp1252 bytes, a best guess
for legacy single-byte encodings; newlines normalized and stray control characters
dropped. Binary data is an error.
"""

from __future__ import annotations

import codecs
import re

from assistant.documents.kinds import binary_error
from models.errors import XGenError

_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# C0/C1 control characters other than tab, newline, vertical tab, form feed, carriage return
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-9;:?<=>]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_MAX_CONTROL_FRACTION = 0.01
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)


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


def normalize_text(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def decode_text(data: bytes, name: str, *, html: bool = False) -> str:
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
                raise binary_error(name, data, "it contains NUL bytes")
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
                return _clean_controls(normalize_text(mixed), name, data)
            encoding = _best_guess(data)
            if encoding is None:
                raise binary_error(name, data, "it is not in any text encoding")
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise binary_error(name, data, f"it is not valid {encoding}") from None
    if not data:
        raise XGenError(f"{name} is empty (it holds only a byte-order mark)")
    try:
        text.encode("utf-8")  # lone surrogates from an odd codec
    except UnicodeEncodeError:
        raise binary_error(name, data, "it is not in any text encoding") from None
    return _clean_controls(normalize_text(text), name, data)


_SCAN_SLICE = 1 << 20  # characters


def _clean_controls(text: str, name: str, data: bytes) -> str:
    """Reject text full of control characters; drop the few stray ones (and ANSI colours)."""
    if "\x1b" in text:
        text = _ANSI_ESCAPE.sub("", text)
    # Counted a slice at a time: one findall over 50 MB holds the GIL for ~0.4 s, which
    # froze the app's screen while a worker read a large file.
    n_control = sum(len(CONTROL_CHARS.findall(text, start, start + _SCAN_SLICE))
                    for start in range(0, len(text), _SCAN_SLICE))
    if n_control:
        if n_control > _MAX_CONTROL_FRACTION * len(text):
            if "\0" in text:
                raise binary_error(name, data, "it contains NUL characters")
            raise binary_error(name, data, f"{n_control} control characters")
        text = CONTROL_CHARS.sub("", text)
    return text
