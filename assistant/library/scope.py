"""What `ask` needs of the index beside a search: the passages of some files and folders.

- `size`: how many passages they hold and, when that is few enough to matter, their XGen
  tokens (does everything fit the context? then it all goes in, no search), each file's
  counted once and kept in the index;
- `every`: their passages in file and reading order (when everything fits);
- `file_state`: what the index knows of one file (indexed with its hash and tokens, or
  left out and why), so a file the user named is never silently missing.

The passages come as the same `Hit`s a search gives (score 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.library.catalog import where
from assistant.library.schema import IndexDatabase
from assistant.library.retrieve import counted
from assistant.library.search import Hit
from models.errors import XGenError


@dataclass(frozen=True)
class FileState:
    status: str | None  # "indexed", "skipped", or None: not in the index
    why: str | None
    sha256: str | None
    n_tokens: int


def _count(texts) -> int:
    """XGen tokens of passages (the index stores no counts: see retrieve.counted)."""
    from models.tokenizer import load_xgen_encoding

    encode = load_xgen_encoding(allow_download=False).encode_ordinary
    return sum(len(encode(t)) for t in texts)


def _within(roots: list[bytes]) -> tuple[str, list]:
    conditions, params = zip(*(where(r) for r in roots))
    return "(" + " OR ".join(conditions) + ")", [x for p in params for x in p]


def size(db: IndexDatabase, roots: list[bytes], *, count_tokens_below: int) -> tuple[int, int | None]:
    """(passages, tokens) of the indexed files under `roots`; tokens is None when there
    are `count_tokens_below` passages or more (then they cannot all fit anyway). Each
    file's tokens are counted once and kept (`file_tokens`): a second question on a 4 MB
    file recounted its 5,600 passages, 0.6 s before the model."""
    if not roots:
        return 0, 0
    condition, params = _within(roots)
    passages = db.query(f"SELECT coalesce(sum(n_passages), 0) FROM files WHERE status = 'indexed' AND {condition}",
                        params)[0][0]
    if passages >= count_tokens_below:
        return passages, None
    files = db.query(f"SELECT id, sha256, n_tokens FROM files WHERE status = 'indexed' AND {condition}", params)
    return passages, sum(file_tokens(db, file_id, sha256) if n is None else n for file_id, sha256, n in files)


def file_tokens(db: IndexDatabase, file_id: int, sha256: str | None) -> int:
    """XGen tokens of one file's passages, counted now and kept in the index (schema 3)."""
    texts = db.query("SELECT text FROM passages WHERE file_id = ?", (file_id,))
    n_tokens = _count(t for (t,) in texts)
    try:
        with db.write() as c:  # unless the file was indexed anew meanwhile
            c.execute("UPDATE files SET n_tokens = ? WHERE id = ? AND sha256 IS ?", (n_tokens, file_id, sha256))
    except XGenError:
        pass  # kept only to save the next count (a busy or full disk: counted again then)
    return n_tokens


def every(db: IndexDatabase, roots: list[bytes], *, limit: int) -> list[Hit]:
    """The first `limit` passages under `roots`, file by file (in path order), each file's
    in reading order."""
    if not roots:
        return []
    condition, params = _within(roots)
    rows = db.query(
        "SELECT files.path, p.start_line, p.end_line, p.start_page, p.end_page, 0.0, p.text "
        f"FROM files JOIN passages AS p ON p.file_id = files.id WHERE files.status = 'indexed' AND {condition} "
        "ORDER BY files.path, p.seq LIMIT ?", [*params, limit])
    return counted([Hit(bytes(r[0]), *r[1:]) for r in rows])


def file_state(db: IndexDatabase, path: bytes) -> FileState:
    """What the index knows of one file; its tokens are counted once and kept (see schema)."""
    rows = db.query("SELECT id, status, why, sha256, n_tokens FROM files WHERE path = ?", (path,))
    if not rows:
        return FileState(None, None, None, 0)
    file_id, status, why, sha256, n_tokens = rows[0]
    if n_tokens is None:
        n_tokens = file_tokens(db, file_id, sha256) if status == "indexed" else 0
    return FileState(status, why, sha256, n_tokens)


def indexed_files(db: IndexDatabase, roots: list[bytes]) -> list[tuple[bytes, str]]:
    """(path, sha256) of the indexed files under `roots`, in path order."""
    if not roots:
        return []
    condition, params = _within(roots)
    return [(bytes(p), s) for p, s in db.query(
        f"SELECT path, sha256 FROM files WHERE status = 'indexed' AND {condition} ORDER BY path", params)]
