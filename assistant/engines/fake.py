"""A fake engine with queued replies, for tests of everything above the engine.

It tokenizes like XGen (tiktoken, offline cache), records every prompt it is given, and
replays the queued replies in order (or a default one), streaming them token by token.
It counts prefix reuse like a real engine would, so budgeting and cache behaviour can
be asserted without a model.
"""

from __future__ import annotations

import threading
from collections import deque

from assistant.engines.base import (Completion, Engine, GenerationRun, OnPrefill, OnText, SamplingSettings,
                                    TiktokenVocab, common_prefix_length)
from models.tokenizer import XGenTokenizer


class FakeEngine(TiktokenVocab, Engine):
    name = "fake"

    def __init__(self, replies: list[str] | None = None, *, n_ctx: int = 2048, default_reply: str = "OK.",
                 model_name: str = "fake-model", step_delay: float = 0.0):
        self.replies: deque[str] = deque(replies or [])
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

    def queue(self, *replies: str) -> None:
        self.replies.extend(replies)

    def prompt_texts(self) -> list[str]:
        return [self._tokenizer.decode(p) for p in self.prompts]

    def generate(self, prompt_ids: list[int], settings: SamplingSettings, *,
                 stop: threading.Event | None = None, on_text: OnText | None = None,
                 on_prefill: OnPrefill | None = None) -> Completion:
        run = GenerationRun(self, prompt_ids, stop, on_text, settings)
        self.prompts.append(list(prompt_ids))
        self.settings.append(settings)
        reused = min(common_prefix_length(self._cached, prompt_ids), len(prompt_ids) - 1)
        run.stats.prompt_evaluated = len(prompt_ids) - reused
        if on_prefill is not None:
            for pos in range(reused, len(prompt_ids), self.prefill_batch):
                on_prefill(min(pos + self.prefill_batch, len(prompt_ids)), len(prompt_ids))
        reply = self.replies.popleft() if self.replies else self.default_reply
        finish = "eos"
        for token in self.tokenize(reply):
            if run.stopped():
                finish = "stopped"
                break
            if len(run.out) >= settings.max_tokens:
                finish = "length"
                break
            if len(prompt_ids) + len(run.out) >= self.n_ctx:
                finish = "context"
                break
            if stop is not None and self.step_delay:
                stop.wait(self.step_delay)
            if run.emit(token):
                break  # a stop string: the reply ends like at end-of-text
        self._cached = list(prompt_ids) + run.out
        return run.finish(finish)
