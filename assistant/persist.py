"""Saving replies as they stream, so a killed process loses at most half a second of text."""

from __future__ import annotations

import time

from assistant.chat import Answer
from assistant.store import Store


def answer_meta(answer: Answer) -> dict:
    """What a stored answer keeps besides its text: citations with their passages, stats."""
    s = answer.stats
    return {
        "citations": [{"number": p.number, "label": p.label, "text": p.chunk.text} for p in answer.citations],
        "stats": {"prompt_tokens": s.prompt_tokens, "prompt_evaluated": s.prompt_evaluated,
                  "generated": s.generated, "seconds": round(s.seconds, 3),
                  "seconds_to_first_token": round(s.seconds_to_first_token, 3),
                  "tokens_per_second": round(s.tokens_per_second, 2)},
        "finish": s.finish,
        "notes": answer.notes,
    }


class StreamingReply:
    """An assistant message created before generation and updated while it grows."""

    def __init__(self, store: Store, session_id: str, every: float = 0.5):
        self.store = store
        self.message = store.add_message(session_id, "assistant", "", meta={"finish": "streaming"})
        self.every = every
        self.parts: list[str] = []
        self._saved_at = time.monotonic()

    def on_text(self, text: str) -> None:
        self.parts.append(text)
        if time.monotonic() - self._saved_at >= self.every:
            self.store.update_message(self.message.id, "".join(self.parts), {"finish": "streaming"})
            self._saved_at = time.monotonic()

    def finish(self, answer: Answer) -> None:
        self.store.update_message(self.message.id, answer.text, answer_meta(answer))
