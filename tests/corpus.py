"""A large, real, mixed text corpus gathered from files already on this machine.

Tokenizer parity (XGenTokenizer vs llama.cpp on our GGUF vocabulary) has to be proven on
lots of real text, not a handful of strings. This collects, deterministically (sorted
paths, fixed order of sources), documents from five kinds of source and takes them in
turn, always from the kind with the fewest tokens so far, so the mix stays balanced:

* python:     the running interpreter's standard library sources;
* docs:       markdown / reStructuredText files in /usr/share/doc and site-packages,
              then other text / README / LICENSE-like files there;
* html:       HTML files in /usr/share/doc, site-packages and the standard library;
* non_ascii:  CJK test texts of the standard library, then any text file in the roots
              above (and /usr/share/i18n) whose bytes are at least 2% non-ASCII;
* whitespace: the interpreter's Makefile, then tab-indented or column-aligned C headers
              in /usr/include, then other Makefiles and C sources (long runs of tabs
              and spaces, which XGen tokenizes with its own whitespace tokens).

Files are read as UTF-8; binary or undecodable files are skipped, each file is capped at
about 200 KB (cut at a line end) and identical contents are kept once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import site
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

from models.tokenizer import XGenTokenizer

MAX_FILE_BYTES = 200_000
MIN_FILE_BYTES = 256  # skip stubs such as dist-info top_level.txt
_ASCII = bytes(range(128))
_SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", "node_modules"}

_DOC_SUFFIXES = {".md", ".rst", ".txt", ".markdown"}
_DOC_PREFIXES = ("license", "licence", "copying", "readme", "notice", "authors", "copyright")
_HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
# where real non-ASCII prose lives ("" covers /usr/share/i18n/locales/*)
_TEXTISH_SUFFIXES = _DOC_SUFFIXES | _HTML_SUFFIXES | {".py", ".json", ".xml", ""}
_C_SUFFIXES = {".c", ".h", ".cc", ".cpp", ".hpp", ".hh"}


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _site_packages() -> list[Path]:
    found = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    try:
        found += site.getsitepackages()
    except AttributeError:  # old virtualenv's site module
        pass
    out: list[Path] = []
    for p in map(Path, found):
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def _walk(root: Path, skip: set[Path] = frozenset()) -> Iterator[Path]:
    """Files under root, depth first, names sorted: the same order on every run."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in _SKIP_DIRS and Path(dirpath, d) not in skip
        )
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if path.is_file():
                yield path


def _read_bytes(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) < MIN_FILE_BYTES or b"\0" in data:
        return None
    if len(data) > MAX_FILE_BYTES:
        # Cut at a line end: never splits a UTF-8 sequence and keeps lines whole.
        cut = data.rfind(b"\n", 0, MAX_FILE_BYTES)
        data = data[: cut + 1] if cut > 0 else data[:MAX_FILE_BYTES]
    return data


def _decode(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.strip() else None


def _texts(paths: Iterator[Path], keep: Callable[[Path, bytes], bool]) -> Iterator[tuple[str, str]]:
    for path in paths:
        data = _read_bytes(path)
        if data is None or not keep(path, data):
            continue
        text = _decode(data)
        if text is not None:
            yield str(path), text


def _python_sources() -> Iterator[tuple[str, str]]:
    stdlib = _stdlib()
    paths = _walk(stdlib, skip={stdlib / "site-packages"})
    return _texts(paths, lambda p, _: p.suffix == ".py")


def _is_doc(path: Path) -> bool:
    return path.suffix.lower() in _DOC_SUFFIXES or path.name.lower().startswith(_DOC_PREFIXES)


def _is_markup(path: Path) -> bool:
    return path.suffix.lower() in {".md", ".rst", ".markdown"}


def _docs() -> Iterator[tuple[str, str]]:
    roots = [Path("/usr/share/doc"), *_site_packages()]
    # Markdown/reST prose first; LICENSE-like files (many near-duplicates) only after.
    for root in roots:
        yield from _texts(_walk(root), lambda p, _: _is_markup(p))
    for root in roots:
        yield from _texts(_walk(root), lambda p, _: _is_doc(p) and not _is_markup(p))


def _html() -> Iterator[tuple[str, str]]:
    for root in [Path("/usr/share/doc"), *_site_packages(), _stdlib()]:
        yield from _texts(_walk(root), lambda p, _: p.suffix.lower() in _HTML_SUFFIXES)


def _mostly_foreign(path: Path, data: bytes) -> bool:
    if path.suffix.lower() not in _TEXTISH_SUFFIXES:
        return False
    non_ascii = len(data.translate(None, _ASCII))
    return non_ascii >= 256 and non_ascii * 50 >= len(data)


def _non_ascii() -> Iterator[tuple[str, str]]:
    stdlib = _stdlib()
    # UTF-8 versions of the codec test texts: Chinese, Japanese, Korean prose.
    cjk = sorted((stdlib / "test" / "cjkencodings").glob("*-utf8.txt"))
    yield from _texts(iter(cjk), lambda p, _: True)
    roots = [stdlib / "test", Path("/usr/share/i18n/locales"), Path("/usr/share/doc")]
    for root in [*roots, *_site_packages()]:
        yield from _texts(_walk(root), _mostly_foreign)


def _is_makefile(path: Path) -> bool:
    name = path.name.lower()
    return name.startswith(("makefile", "gnumakefile")) or path.suffix == ".mk"


def _whitespace_heavy(path: Path, data: bytes) -> bool:
    if _is_makefile(path):
        return True
    if path.suffix.lower() not in _C_SUFFIXES:
        return False
    lines = data.count(b"\n") + 1
    # tab-indented, or with long space runs (aligned columns)
    return data.count(b"\n\t") * 10 >= lines or data.count(b"        ") * 10 >= lines


def _whitespace() -> Iterator[tuple[str, str]]:
    libpl = sysconfig.get_config_var("LIBPL")  # holds the interpreter's own Makefile
    roots = [Path(libpl)] if libpl else []
    roots += [Path("/usr/include"), Path("/usr/share/dpkg"), Path("/usr/share/doc")]
    for root in roots:
        yield from _texts(_walk(root), _whitespace_heavy)


_SOURCES = {
    "python": _python_sources,
    "docs": _docs,
    "html": _html,
    "non_ascii": _non_ascii,
    "whitespace": _whitespace,
}


@functools.lru_cache(maxsize=4)
def _gather(min_tokens: int) -> tuple[tuple[str, str, str, int], ...]:
    tokenizer = XGenTokenizer(allow_download=False)
    iters = {kind: make() for kind, make in _SOURCES.items()}
    counts = dict.fromkeys(iters, 0)
    seen: set[bytes] = set()
    picked: list[tuple[str, str, str, int]] = []
    total = 0
    while total < min_tokens and iters:
        # the kind with the fewest tokens so far (ties: the order of _SOURCES)
        kind = min(iters, key=lambda k: counts[k])
        try:
            path, text = next(iters[kind])
        except StopIteration:
            del iters[kind]
            continue
        digest = hashlib.sha1(text.encode()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        n = len(tokenizer.encode(text))
        counts[kind] += n
        total += n
        picked.append((kind, path, text, n))
    return tuple(picked)


def real_text_sources(min_tokens: int = 500_000) -> list[tuple[str, str, str, int]]:
    """(kind, path, text, n_tokens) for each document: the corpus with its provenance."""
    return list(_gather(min_tokens))


def real_text_corpus(min_tokens: int = 500_000) -> list[str]:
    """Real documents from this machine totalling at least min_tokens XGen tokens.

    Returns fewer only if the machine does not hold that much text.
    """
    return [text for _, _, text, _ in _gather(min_tokens)]
