"""Real folders for the library tests, and readers of what the index holds."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tests.test_documents import make_docx, make_pdf

PDF_PAGES = [["Annual accounts, page one.", "The harbour budget rose."],
             ["Page two: the lighthouse keeper retired."],
             ["Page three: outlook for the ferry."]]


def build_folder(root: Path) -> Path:
    """A folder with every case the walk must handle; returns it. The files that must be
    indexed are listed by `EXPECTED_INDEXED` (relative paths)."""
    (root / "notes" / "deep").mkdir(parents=True)
    (root / "notes" / "a.txt").write_text("The giraffe eats leaves.\n\nSecond paragraph about zebras.\n")
    (root / "notes" / "deep" / "b.md").write_text("# Heading\n\nA walrus sleeps on ice.\n")
    (root / "notes" / "debug.log").write_text("ignored log mentioning a penguin\n")
    (root / "notes" / "deep" / "keep.log").write_text("kept log mentioning a pelican\n")
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "notes" / "deep" / ".gitignore").write_text("!keep.log\n")
    (root / ".ignore").write_text("drafts/\n")
    (root / "drafts").mkdir()
    (root / "drafts" / "d.txt").write_text("draft about an ocelot\n")
    (root / "build").mkdir()
    (root / "build" / "out.txt").write_text("built text about a jaguar\n")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "h.txt").write_text("hidden text about a lemur\n")
    (root / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (root / "blob.xyz").write_bytes(b"\x00\x01\x02binary\x00" * 50)
    (root / "latin1.txt").write_bytes("Le café est très chaud, dit le capitaine.\n".encode("latin-1"))
    (root / os.fsdecode(b"caf\xe9-name.txt")).write_text("a file whose name is Latin-1: armadillo\n")
    (root / "report.pdf").write_bytes(make_pdf(PDF_PAGES))
    make_docx(root / "letter.docx")
    os.mkfifo(root / "pipe")
    (root / "notes" / "loop").symlink_to("..")  # a link loop, back up the tree
    return root


EXPECTED_INDEXED = {"notes/a.txt", "notes/deep/b.md", "notes/deep/keep.log", "latin1.txt",
                    os.fsdecode(b"caf\xe9-name.txt"), "report.pdf", "letter.docx"}


def rows(home: Path, sql: str, params=()) -> list[tuple]:
    db = sqlite3.connect(home / "library.db")
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def passages(home: Path) -> list[tuple]:
    """(path, seq, start, end, lines, pages, text) of every passage, sorted: equal for equal indexes."""
    return sorted(rows(home, "SELECT f.path, p.seq, p.start_char, p.end_char, p.start_line, p.end_line, "
                             "p.start_page, p.end_page, p.text "
                             "FROM passages p JOIN files f ON f.id = p.file_id"))


def indexed(home: Path, root: Path) -> set[str]:
    prefix = os.fsencode(root) + b"/"
    return {os.fsdecode(bytes(p)[len(prefix):]) for (p,) in
            rows(home, "SELECT path FROM files WHERE status = 'indexed'")}


def fts_intact(home: Path) -> bool:
    db = sqlite3.connect(home / "library.db")
    try:
        db.execute("INSERT INTO passages_fts (passages_fts) VALUES ('integrity-check')")
        return True
    except sqlite3.DatabaseError:
        return False
    finally:
        db.close()
