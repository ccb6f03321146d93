"""Which files of a folder the library reads, and why it leaves the others out.

Like ripgrep, with two differences the issue asks for: `.gitignore` files count whether
or not the folder is a git repository, and each file left out says why.

- Only regular files are read. FIFOs, sockets and devices are never opened (a FIFO with
  no writer would block forever; a device never ends).
- Hidden files and folders (a name starting with ".") are left out unless `hidden`;
  `.git` folders always (git's own data, never documents).
- `.gitignore` and `.ignore` files, nested ones too, unless `no_ignore`: a deeper file's
  rule wins over a shallower one, and in one folder `.ignore` wins over `.gitignore`
  (ripgrep's order). An ignored folder is not entered at all.
- Symbolic links to folders are never followed: one that leads out of the tree would
  index someone else's files, and one inside it leads to files indexed at their own path
  anyway (or around a loop). A link to a file outside the tree is read (a folder of links
  to documents); one to a file inside it is left out (indexed at its own path).
- Names of kinds that are never documents (images, archives, programs) are left out by
  name, unopened; other unknown names are read and their content decides (as `ask` does).

The walk is depth first, in byte order of names within a folder, with an explicit stack
(no recursion limit on deep trees); its memory is the folders on the current path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import pathspec

from assistant.documents.kinds import kind_from_name
from assistant.documents.load import open_regular
from assistant.library import names
from models.errors import XGenError

IGNORE_FILES = (b".gitignore", b".ignore")  # later wins: .ignore over .gitignore
NEVER_DOCUMENTS = frozenset("""
    .png .jpg .jpeg .gif .bmp .tif .tiff .webp .ico .icns .heic .psd .raw .cr2 .nef
    .mp3 .wav .flac .ogg .m4a .aac .wma .mp4 .mkv .avi .mov .wmv .webm .flv .m4v
    .zip .gz .tgz .bz2 .xz .zst .7z .rar .tar .jar .war .whl .egg .deb .rpm .dmg .iso .img
    .exe .dll .so .dylib .o .a .lib .obj .class .pyc .pyo .pyd .wasm .bin .dat .pack .idx
    .ttf .otf .woff .woff2 .eot .sqlite .sqlite3 .db .mdb .doc .xls .ppt .xlsx .pptx .odt .ods
    .odp .pages .numbers .key .npy .npz .pt .pth .ckpt .safetensors .gguf .onnx .h5 .parquet
""".split())


@dataclass(frozen=True)
class Found:
    """A regular file to read (its stat, following a link to a file)."""

    path: bytes
    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True)
class Skip:
    """A file or folder left out, and why. `unlisted`: a folder that could not be read, whose
    files already in the index are kept (they were not deleted, only not seen)."""

    path: bytes
    why: str
    folder: bool = False
    unlisted: bool = False


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    return "not a regular file"


class _Rules:
    """The ignore files of one folder, the one that wins first (.ignore, then .gitignore)."""

    def __init__(self, folder: bytes, sources: list[tuple[bytes, list[str]]]):
        self.folder = folder
        self.specs = [(name, pathspec.GitIgnoreSpec.from_lines(lines)) for name, lines in reversed(sources)]

    def verdict(self, path: bytes, is_dir: bool) -> tuple[bool, str] | None:
        """(ignored, which file said so), or None if no pattern here matches."""
        rel = names.as_str(path[len(self.folder) + 1:]) + ("/" if is_dir else "")
        for name, spec in self.specs:
            include = spec.check_file(rel).include
            if include is not None:
                return include, names.shown(self.folder + b"/" + name)
        return None


def _read_rules(folder: bytes) -> _Rules | None:
    sources = []
    for name in IGNORE_FILES:
        try:  # never blocks on a FIFO named .gitignore
            with open_regular(os.path.join(folder, name), names.shown(name)) as f:
                text = f.read(1 << 20).decode("utf-8", "surrogateescape")
        except (OSError, XGenError):
            continue  # missing, unreadable or not a file: it rules nothing out, as in git
        sources.append((name, text.splitlines()))
    return _Rules(folder, sources) if sources else None


def _ignored(rules: list[_Rules], path: bytes, is_dir: bool) -> str | None:
    for r in reversed(rules):  # the deepest ignore file with a matching pattern decides
        verdict = r.verdict(path, is_dir)
        if verdict is not None:
            return f"ignored by {verdict[1]}" if verdict[0] else None
    return None


def walk(root: bytes, *, hidden: bool = False, no_ignore: bool = False) -> Iterator[Found | Skip]:
    """Every regular file under `root` to read, and every file or folder left out.

    `root` is an absolute, resolved path (a folder or one file); the caller checked it exists."""
    try:
        st = os.stat(root)
    except OSError as exc:
        yield Skip(root, f"cannot be read: {exc.strerror or exc}", unlisted=True)
        return
    if not stat.S_ISDIR(st.st_mode):
        if stat.S_ISREG(st.st_mode):
            yield Found(root, st.st_size, st.st_mtime_ns, st.st_ino)
        else:
            yield Skip(root, _special_kind(st.st_mode))
        return
    # Each level: (folder, its ignore rules or None, the entries left to visit, reversed).
    rules: list[_Rules] = []
    stack: list[tuple[bytes, bool, list[os.DirEntry]]] = []

    def enter(folder: bytes) -> Skip | None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)
        except FileNotFoundError:
            return Skip(folder, "was removed while it was being indexed", folder=True)
        except OSError as exc:
            return Skip(folder, f"cannot be listed: {exc.strerror or exc}; its files already indexed are kept",
                        folder=True, unlisted=True)
        found = None if no_ignore else _read_rules(folder)
        if found is not None:
            rules.append(found)
        stack.append((folder, found is not None, entries))
        return None

    problem = enter(root)
    if problem is not None:
        yield problem
        return
    while stack:
        folder, has_rules, entries = stack[-1]
        if not entries:
            stack.pop()
            if has_rules:
                rules.pop()
            continue
        entry = entries.pop()
        yield from _visit(root, entry, hidden, rules, enter)


def _visit(root: bytes, entry: os.DirEntry, hidden: bool, rules: list[_Rules], enter) -> Iterator[Found | Skip]:
    path = entry.path
    name = entry.name
    try:
        is_link = entry.is_symlink()
        is_dir = entry.is_dir(follow_symlinks=False)
    except OSError as exc:
        yield Skip(path, f"cannot be read: {exc.strerror or exc}")
        return
    if is_dir and name == b".git":
        yield Skip(path, "git's own data", folder=True)
        return
    if name.startswith(b".") and not hidden:
        yield Skip(path, "hidden (--hidden reads it)", folder=is_dir)
        return
    if rules:
        why = _ignored(rules, path, is_dir)
        if why is not None:
            yield Skip(path, f"{why} (--no-ignore reads it)", folder=is_dir)
            return
    if is_dir:
        problem = enter(path)
        if problem is not None:
            yield problem
        return
    if is_link:
        yield from _visit_link(root, path)
        return
    try:
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return  # removed between listing and now: it is simply not there
    except OSError as exc:
        yield Skip(path, f"cannot be read: {exc.strerror or exc}")
        return
    if not stat.S_ISREG(st.st_mode):
        yield Skip(path, _special_kind(st.st_mode))
        return
    skip = _never_a_document(path)
    yield skip if skip is not None else Found(path, st.st_size, st.st_mtime_ns, st.st_ino)


def _never_a_document(path: bytes) -> Skip | None:
    name = names.as_str(os.path.basename(path))
    if kind_from_name(name) is None:
        ext = os.path.splitext(name.lower())[1]
        if ext in NEVER_DOCUMENTS:
            return Skip(path, f"a {ext} file, not a document")
    return None


def _visit_link(root: bytes, path: bytes) -> Iterator[Found | Skip]:
    target = os.path.realpath(path)
    try:
        st = os.stat(path)
    except OSError:
        yield Skip(path, "a broken symbolic link (or a link loop)")
        return
    inside = names.is_within(target, root)
    if stat.S_ISDIR(st.st_mode):
        where = "inside the folder, indexed at its own path" if inside else "leading out of the folder"
        yield Skip(path, f"a symbolic link to a folder {where}; not followed", folder=True)
        return
    if not stat.S_ISREG(st.st_mode):
        yield Skip(path, f"a symbolic link to {_special_kind(st.st_mode)}")
        return
    if inside:
        yield Skip(path, f"a symbolic link to {names.shown(target)}, indexed at its own path")
        return
    skip = _never_a_document(path)
    yield skip if skip is not None else Found(path, st.st_size, st.st_mtime_ns, st.st_ino)
