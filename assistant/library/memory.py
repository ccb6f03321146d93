"""An index of texts that are no file on disk (standard input), for one run.

Such a text cannot be watched for changes, so it is not put in the library index. It is
cut into the same passages (extract.passages_of) and searched the same way (search,
scope) in an index of the same schema, in a private temporary folder removed on close.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from assistant.library.extract import passages_of
from assistant.library.schema import IndexDatabase, add_passages


class MemoryIndex:
    def __init__(self):
        self._folder = tempfile.TemporaryDirectory(prefix="xgen-text-")  # mode 0700
        self.db = IndexDatabase(Path(self._folder.name) / "texts.db", check=False)

    def add(self, key: bytes, doc) -> None:
        """Index `doc` (a Document) under the name `key`, replacing what was there."""
        passages = passages_of(doc)
        sha = doc.sha256 or hashlib.sha256(doc.text.encode()).hexdigest()
        with self.db.write() as c:
            c.execute("DELETE FROM passages WHERE file_id IN (SELECT id FROM files WHERE path = ?)", (key,))
            c.execute("DELETE FROM files WHERE path = ?", (key,))
            file_id = c.execute("INSERT INTO files (path, status, kind, sha256, n_passages, updated_at) "
                                "VALUES (?, 'indexed', ?, ?, ?, ?)",
                                (key, doc.kind, sha, len(passages), time.time())).lastrowid
            add_passages(c, file_id, [(i, *p) for i, p in enumerate(passages)])

    def close(self) -> None:
        self.db.close()
        self._folder.cleanup()
