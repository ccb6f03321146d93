"""Saving replies as they stream, so a killed process loses at most half a second of text.

Shared by the command line and the terminal app.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from assistant.chat import Answer
from assistant.engines.base import GenerationStats
from assistant.sources import Sources, citations_meta, passage_meta
from assistant.store import Message, Store, StoreBusy
from models.errors import XGenError

SAVE_INTERVAL = 0.5  # seconds between saves of a reply being written
FINAL_SAVE_PATIENCE = 60.0  # seconds the last save of a reply waits for another program's write


def stats_meta(stats: GenerationStats) -> dict[str, Any]:
    return {"prompt_tokens": stats.prompt_tokens, "prompt_evaluated": stats.prompt_evaluated,
            "generated": stats.generated, "seconds": round(stats.seconds, 3),
            "seconds_to_first_token": round(stats.seconds_to_first_token, 3),
            "tokens_per_second": round(stats.tokens_per_second, 2)}


def answer_meta(answer: Answer, context_used: int | None = None, n_ctx: int | None = None) -> dict[str, Any]:
    cited = {p.number for p in answer.citations}
    return {"citations": citations_meta(answer), **Sources.of(answer).as_meta(),
            # the passages given but not cited, with their text: the app opens them too
            "given": [passage_meta(p) for p in answer.sources if p.number not in cited],
            "stats": stats_meta(answer.stats), "finish": answer.stats.finish, "notes": answer.notes,
            "context_used": context_used, "n_ctx": n_ctx,
            # which passage each number given this turn is: a resumed session keeps the numbers
            "numbered": [[p.number, *p.found.key] for p in answer.sources if p.number in answer.passages_added]}


class ProgressiveSave:
    """Saves a message as its text streams in: at most every `interval` seconds, so a
    killed app loses at most that much of a reply."""

    def __init__(self, store: Store, message_id: int, *, interval: float = SAVE_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.message_id = message_id
        self.interval = interval
        self.clock = clock
        self.parts: list[str] = []
        self._last = clock()
        self.error: str | None = None  # why saving failed (the reply goes on regardless)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, piece: str) -> None:
        self.parts.append(piece)
        if self.clock() - self._last >= self.interval:
            self.flush()

    def tee(self, on_text: Callable[[str], None] | None) -> Callable[[str], None]:
        """An on_text that saves each piece, then passes it on."""
        def stream(piece: str) -> None:
            self.add(piece)
            if on_text is not None:
                on_text(piece)

        return stream

    def flush(self) -> None:
        self._last = self.clock()
        try:
            # Never wait here: this runs between two tokens, and another program holding
            # the write lock would hold up the reply (a token per busy timeout).
            self.store.update_message(self.message_id, self.text, wait=False)
        except StoreBusy:
            pass  # saved at the next interval, or by finish()
        except XGenError as exc:  # a full disk or a deleted session must not stop the reply
            self.error = str(exc)

    def finish(self, content: str, meta: dict[str, Any]) -> Message | None:
        """The reply's last save, waiting up to FINAL_SAVE_PATIENCE for a busy store; None
        (and `error` says why) only if it really was not saved."""
        deadline = self.clock() + FINAL_SAVE_PATIENCE
        while True:
            try:
                message = self.store.update_message(self.message_id, content, meta)
                self.error = None  # an earlier flush's failure is mended by this save
                return message
            except StoreBusy as exc:
                if self.clock() < deadline:
                    continue  # each attempt has already waited the busy timeout
                self.error = f"{exc} (for over {FINAL_SAVE_PATIENCE:.0f} s)"
                return None
            except XGenError as exc:
                self.error = str(exc)
                return None
