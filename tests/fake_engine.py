"""A fake engine with queued replies, for tests of everything above the engine.

It tokenizes like XGen (tiktoken, offline cache), records every prompt it is given, and
replays the queued replies in order (or a default one), streaming them token by token
through the one generation loop (assistant/engines/driver.py), so stop strings, limits
and stop requests behave as with a real engine. A reply is text, or a list of token ids
(which may include end-of-text). It counts prefix reuse like a real engine would, so
budgeting and cache behaviour can be asserted without a model.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator

from assistant.engines.base import Engine, SamplingSettings, TiktokenVocab, common_prefix_length
from assistant.engines.driver import Prefilled, Step
from models.tokenizer import XGenTokenizer


class FakeEngine(TiktokenVocab, Engine):
    name = "fake"

    def __init__(self, replies: list[str | list[int]] | None = None, *, n_ctx: int = 2048,
                 default_reply: str = "OK.", model_name: str = "fake-model", step_delay: float = 0.0):
        self.replies: deque[str | list[int]] = deque(replies or [])
        self.default_reply = default_reply
        self.prompts: list[list[int]] = []
        self.settings: list[SamplingSettings] = []
        self.model_name = model_name
        self._n_ctx = n_ctx
        self._tokenizer = XGenTokenizer(allow_download=False)
        self._cached: list[int] = []
        self.step_delay = step_delay  # lets UI tests stop a reply midway
        self.prefill_batch = 256  # prompt tokens per reported step, as llama.cpp's default batch

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def queue(self, *replies: str | list[int]) -> None:
        self.replies.extend(replies)

    def prompt_texts(self) -> list[str]:
        return [self._tokenizer.decode(p) for p in self.prompts]

    def stream(self, prompt_ids: list[int], settings: SamplingSettings, budget: int,
               stop: threading.Event | None) -> Iterator[Step]:
        self.prompts.append(list(prompt_ids))
        self.settings.append(settings)
        reply = self.replies.popleft() if self.replies else self.default_reply
        return self._replay(list(prompt_ids), list(reply) if isinstance(reply, list) else self.tokenize(reply), stop)

    def _replay(self, prompt_ids: list[int], tokens: list[int], stop: threading.Event | None) -> Iterator[Step]:
        reused = min(common_prefix_length(self._cached, prompt_ids), len(prompt_ids) - 1)
        out: list[int] = []
        try:
            # Reported in batches, as llama.cpp reads a prompt (progress inside a summary part).
            for pos in range(reused, len(prompt_ids), self.prefill_batch):
                end = min(pos + self.prefill_batch, len(prompt_ids))
                yield Prefilled(end - pos, end)
            for token in tokens:
                if stop is not None and self.step_delay:
                    stop.wait(self.step_delay)
                out.append(token)
                yield token
        finally:
            self._cached = prompt_ids + out
