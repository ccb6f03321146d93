"""The one generation loop: every engine's `generate` runs here.

An engine knows how to evaluate a prompt and produce what comes next; this loop alone
decides when a reply ends and what it was. An engine's `stream(prompt_ids, settings,
budget, stop)` is a generator of steps:

* `Prefilled(n)`: n more prompt tokens were evaluated (the rest came from its cache);
* an `int`: one sampled token id;
* `Text(text, ids)`: a piece of text a server streamed (with its ids, if it sent them);
* `WAITING`: nothing has arrived yet (a server still silent); the loop's watchdog counts;

and it may return a `ServerReport` (what a server said about the reply once it ended).

The loop pulls one step at a time and checks before each pull whether the reply is
over, so an engine never computes what the reply will not use: no token is asked for
past the budget, and a stop request is honoured between prompt batches, between
tokens and, for a server, between 50 ms polls. When the reply ends the generator is
closed, which lets the engine clean up (a server's connection is closed, which makes
it stop).

Finish reasons, all decided here:
* "stopped": the caller's stop event was set (checked before every step, and when the
  stream ends, since llama.cpp aborts a batch on it);
* "length" / "context": the budget, min(max_tokens, room left in the context), was
  reached; "length" when max_tokens was the tighter limit;
* "eos": the end-of-text token, a stop string (the model began an invented next turn),
  or the stream simply ended (the model or server said it was done).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Protocol, Union

from assistant.engines.stops import ReplyDecoder
from models.errors import XGenError

OnText = Callable[[str], None]
# (prompt tokens in the cache so far, prompt length): called as the prompt is read in batches.
OnPrefill = Callable[[int, int], None]
WAIT_NOTICE_AFTER = 1.0  # seconds of silence before the first notice, then one notice a second
OnWait = Callable[[Union[str, None]], None]  # "waiting for URL: 12 s", then None when the wait is over


@dataclass(frozen=True)
class SamplingSettings:
    """One set of knobs for every engine. temperature 0 means greedy."""

    temperature: float = 0.7
    top_k: int = 100  # the xgen-7b-8k-inst model card's value
    top_p: float = 0.95
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    max_tokens: int = 512
    seed: int | None = None
    stop_strings: tuple[str, ...] = ()  # the reply ends before the first of these (see stops.py)

    @classmethod
    def greedy(cls, max_tokens: int = 512) -> "SamplingSettings":
        return cls(temperature=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0, max_tokens=max_tokens)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0  # length of the prompt
    prompt_evaluated: int = 0  # prompt tokens actually computed (the rest came from the cache)
    generated: int = 0
    seconds_to_first_token: float = 0.0
    seconds: float = 0.0
    finish: str = ""  # "eos", "length", "context" or "stopped"

    @property
    def tokens_per_second(self) -> float:
        decode_time = self.seconds - self.seconds_to_first_token
        return (self.generated - 1) / decode_time if self.generated > 1 and decode_time > 0 else 0.0


@dataclass
class Completion:
    text: str
    token_ids: list[int] = field(default_factory=list)
    stats: GenerationStats = field(default_factory=GenerationStats)


@dataclass(frozen=True)
class Prefilled:
    """`count` more prompt tokens were evaluated; `done`, where known, is how far into the
    prompt the engine's cache now reaches (reused prefix included)."""

    count: int
    done: int | None = None


@dataclass(frozen=True)
class Text:
    """Text a server streamed instead of ids; `ids` when it sent them too."""

    text: str
    ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ServerReport:
    """What a server said once its stream ended (None: it did not say)."""

    out_of_budget: bool = False  # it stopped at the max_tokens it was sent
    generated: int | None = None
    prompt_evaluated: int | None = None


class _Waiting:
    def __repr__(self) -> str:
        return "WAITING"


WAITING = _Waiting()
Step = Union[int, Text, Prefilled, _Waiting]


class Streaming(Protocol):
    """What the driver needs of an engine (assistant/engines/base.py's Engine has it all;
    a protocol here keeps the driver below base.py, with no import back)."""

    n_ctx: int
    eos_id: int

    def tokenize(self, text: str) -> list[int]: ...

    def token_bytes(self, ids: list[int]) -> bytes: ...

    def check_fits(self, prompt_ids: list[int]) -> None: ...

    def silence_watch(self) -> "SilenceWatch": ...

    def stream(self, prompt_ids: list[int], settings: "SamplingSettings", budget: int,
               stop: threading.Event | None) -> Iterator[Step]: ...


class SilenceWatch:
    """Gives up on a source that stays silent longer than `timeout` seconds, and tells
    `on_wait` about the wait once a second (then None when something arrives)."""

    def __init__(self, timeout: float, on_wait: OnWait | None, source: str, hint: str = ""):
        self.timeout = timeout
        self.on_wait = on_wait
        self.source = source  # who is silent, e.g. the server's address
        self.hint = hint  # how to wait longer
        self._notified = False
        self.heard()

    def heard(self) -> None:
        """Something arrived: the silence starts again."""
        self._last = time.monotonic()
        self._next_notice = WAIT_NOTICE_AFTER
        self.close()

    def check(self, what: str) -> None:
        """Still nothing (`what`: "before the first token"...): a notice, or XGenError after timeout."""
        silent = time.monotonic() - self._last
        if silent > self.timeout:
            self.close()
            raise self.gave_up(what)
        if silent >= self._next_notice:
            self._next_notice += 1.0
            self._notified = True
            if self.on_wait is not None:
                self.on_wait(f"waiting for {self.source}: {silent:.0f} s (gives up after {self.timeout:g} s)")

    def gave_up(self, what: str) -> XGenError:
        return XGenError(f"{self.source} sent nothing for {self.timeout:g} s {what}; it may be stuck, or busy "
                         f"with a long prompt{self.hint}")

    def close(self) -> None:
        """End a wait that was shown."""
        if self._notified and self.on_wait is not None:
            self.on_wait(None)
        self._notified = False


def limit_reason(settings: SamplingSettings, budget: int) -> str:
    return "length" if settings.max_tokens <= budget else "context"


class _Reply:
    """What has been generated so far: ids, their text, the stats."""

    def __init__(self, engine: "Streaming", n_prompt: int, on_text: OnText | None, stop_strings: tuple[str, ...]):
        self.engine = engine
        self.started = time.perf_counter()
        self.stats = GenerationStats(prompt_tokens=n_prompt)
        self.decoder = ReplyDecoder(on_text, stop_strings)
        self.ids: list[int] = []
        self.ends: list[int] = []  # characters decoded after each id
        self.pieces = 0  # tokens sampled, or pieces a server streamed
        self.report = ServerReport()

    def add(self, data: bytes, ids: tuple[int, ...]) -> bool:
        """Record one piece; True once a stop string has appeared."""
        self.pieces += 1
        if self.pieces == 1:
            self.stats.seconds_to_first_token = time.perf_counter() - self.started
        hit = self.decoder.push(data)
        self.ids.extend(ids)
        self.ends.extend([self.decoder.decoded] * len(ids))
        return hit

    def finish(self, reason: str) -> Completion:
        stats = self.stats
        stats.finish = reason
        stats.generated = self.report.generated if self.report.generated is not None else self.pieces
        if self.report.prompt_evaluated is not None:
            stats.prompt_evaluated = self.report.prompt_evaluated
        stats.seconds = time.perf_counter() - self.started
        text = self.decoder.close()
        cut = self.decoder.stop_at
        ids = self.ids if cut is None else [t for t, end in zip(self.ids, self.ends) if end <= cut]
        if not self.ids and text:  # a server that streams text only: its ids are the text's tokens
            ids = self.engine.tokenize(text)
        return Completion(text, ids, stats)


def drive(engine: "Streaming", prompt_ids: list[int], settings: SamplingSettings, *,
          stop: threading.Event | None = None, on_text: OnText | None = None,
          on_prefill: OnPrefill | None = None) -> Completion:
    """Run `engine.stream` to one Completion (see the module doc for the rules)."""
    if not prompt_ids:
        raise XGenError("cannot generate from an empty prompt")
    prompt_ids = [int(i) for i in prompt_ids]
    engine.check_fits(prompt_ids)
    reply = _Reply(engine, len(prompt_ids), on_text, settings.stop_strings)
    budget = min(settings.max_tokens, engine.n_ctx - len(prompt_ids))
    limit = limit_reason(settings, budget)

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    if stopped():
        return reply.finish("stopped")
    if budget <= 0:  # servers read max_tokens <= 0 as "no limit"; nothing is evaluated
        return reply.finish(limit)
    watch = engine.silence_watch()
    steps: Iterator[Step] = engine.stream(prompt_ids, settings, budget, stop)
    try:
        with closing(steps):  # closed at the end: the engine cleans up (a server stops)
            while True:
                if stopped():
                    return reply.finish("stopped")
                try:
                    step = next(steps)
                except StopIteration as end:
                    if stopped():  # llama.cpp aborted its batch on the stop request
                        return reply.finish("stopped")
                    if isinstance(end.value, ServerReport):
                        reply.report = end.value
                        if end.value.out_of_budget:
                            return reply.finish(limit)
                    return reply.finish("eos")
                if step is WAITING:
                    if watch is not None:
                        watch.check("before the first token" if not reply.pieces else "between two tokens")
                    continue
                if watch is not None:
                    watch.heard()
                if isinstance(step, Prefilled):
                    reply.stats.prompt_evaluated += step.count
                    if on_prefill is not None and step.done is not None:
                        on_prefill(step.done, len(prompt_ids))
                    continue
                if isinstance(step, Text):
                    if reply.pieces >= budget:  # a server keeps to the max_tokens it was sent, or is cut there
                        return reply.finish(limit)
                    # The server ends its stream after end-of-text itself; the id is no text.
                    ids = tuple(i for i in step.ids if i != engine.eos_id)
                    if reply.add(step.text.encode("utf-8"), ids):
                        return reply.finish("eos")  # an invented next turn (the server may not stop)
                    continue
                token = int(step)
                if token == engine.eos_id:
                    return reply.finish("eos")
                if reply.add(engine.token_bytes([token]), (token,)):
                    return reply.finish("eos")  # the model began an invented next turn
                if reply.pieces >= budget:
                    return reply.finish(limit)
    finally:
        if watch is not None:
            watch.close()
