"""Passages for a question, from libraries brought up to date first: what `ask` will call.

Typical use (the ask integration):

    hits = retrieve(["~/cases/smith"], question, recent=[previous user turns],
                    on_event=show_progress, stop=stop_event)
    given, used = [], 0
    for hit in hits:                     # best first
        if used + hit.n_tokens > budget:  # exact XGen token counts, made by retrieve
            continue                      # (or stop: passages are about the same size)
        given.append(hit); used += hit.n_tokens
    # cite each with hit.location(): "path:12-30" or "path p.3"

`retrieve` first runs `update_library` on the paths (when nothing changed that is one stat
per file: under a second for 20,000 files), then one search across all of them.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterable

from assistant.library import catalog
from assistant.library.events import Event
from assistant.library.job import update_library
from assistant.library.schema import IndexDatabase
from assistant.library.search import Hit, query_words, search

# Words of the recent turns add to the question's, after them (the question's come first
# and win when the query keeps only some).
RECENT_TURNS = 3


def question_query(question: str, recent: Iterable[str] = ()) -> str:
    """The search text for a question in a conversation: the question, then the last
    RECENT_TURNS earlier turns (most recent first)."""
    earlier = list(recent)[-RECENT_TURNS:]
    return "\n".join([question, *reversed(earlier)])


def retrieve(paths: Iterable[str | bytes | os.PathLike], question: str, *, recent: Iterable[str] = (),
             limit: int = 40, update: bool = True, on_event: Callable[[Event], None] | None = None,
             stop: threading.Event | None = None) -> list[Hit]:
    """The best `limit` passages for `question` (plus `recent` turns) in the files and
    folders `paths`, best first; [] when the question has no word to search for (only
    punctuation). Each Hit has its path, lines or pages, text and exact XGen token count.

    update=True (the default) brings the paths' libraries up to date first (events go to
    `on_event`; `stop` ends it early, and the search then uses what is indexed). Raises
    XGenError with one line for a path that does not exist or a damaged index."""
    paths = list(paths)
    if update:
        update_library(paths, on_event=on_event, stop=stop)
    text = question_query(question, recent)
    if not query_words(text):
        return []
    targets = [catalog.resolve(p) for p in paths]
    db = IndexDatabase(check=False)  # update_library checked it a moment ago
    try:
        hits = search(db, text, limit=limit, within=targets)
    finally:
        db.close()
    return counted(hits)


def counted(hits: list[Hit]) -> list[Hit]:
    """The hits with their exact XGen token counts (the index stores none: counting a few
    dozen passages here costs milliseconds, counting all of them at indexing cost most of
    its time). Offline: XGenError if the tokenizer's vocabulary is not cached."""
    if not hits:
        return hits
    from models.tokenizer import load_xgen_encoding

    encode = load_xgen_encoding(allow_download=False).encode_ordinary
    return [dataclasses.replace(h, n_tokens=len(encode(h.text))) for h in hits]
