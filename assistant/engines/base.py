"""The engine interface: what the assistant needs from a model, whoever runs it.

Three engines implement it: llama.cpp on a GGUF (CPU/Metal/CUDA), the PyTorch model
(bf16 on CUDA, fp32 on CPU) and an OpenAI-compatible HTTP server. Prompts are token
ids, never strings, so document text can never inject control tokens, and each engine
reuses the longest cached prefix of the previous prompt, so a follow-up question only
pays for its new tokens.
"""

from __future__ import annotations

import codecs
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from assistant.engines.stops import StopFilter
from models.errors import XGenError
from models.tokenizer import SPECIAL_TOKENS, XGenTokenizer

CONTROL_IDS = frozenset(SPECIAL_TOKENS.values())

OnText = Callable[[str], None]
# (prompt tokens in the cache so far, prompt length): called as the prompt is read in batches.
OnPrefill = Callable[[int, int], None]


class ContextOverflow(XGenError):
    """A prompt that does not fit the model's context window."""


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


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class ReplyDecoder:
    """Turns generated token bytes into text pieces without splitting UTF-8 characters,
    and ends the text before the first stop string (which is never shown)."""

    def __init__(self, on_text: OnText | None, stop_strings: tuple[str, ...] = ()):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._filter = StopFilter(stop_strings, on_text)

    @property
    def decoded(self) -> int:
        """Characters decoded so far."""
        return len(self._filter.text)

    @property
    def stop_at(self) -> int | None:
        """Where the first stop string starts in the decoded text, once one has appeared."""
        return self._filter.cut

    def push(self, data: bytes) -> bool:
        """Add token bytes; True once a stop string has appeared."""
        return self._filter.feed(self._decoder.decode(data))

    def close(self) -> str:
        self._filter.feed(self._decoder.decode(b"", final=True))
        return self._filter.close()


class Engine(ABC):
    """A loaded model. Not thread-safe: one generation at a time per engine."""

    name: str = "engine"  # "llama", "torch", "remote", "fake"
    model_name: str = ""
    eos_id: int = 50256

    @property
    @abstractmethod
    def n_ctx(self) -> int:
        """Context window in tokens (prompt plus reply)."""

    @abstractmethod
    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """Token ids of `text`; special-token text is plain text unless special=True."""

    @abstractmethod
    def token_bytes(self, ids: list[int]) -> bytes:
        """The bytes that ids decode to (control tokens decode to nothing)."""

    def detokenize(self, ids: list[int]) -> str:
        return self.token_bytes(ids).decode("utf-8", errors="replace")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    @property
    def identity(self) -> str:
        """What makes this engine's text what it is (the model's file, not its display name;
        its type and cache settings), for keys of cached model output."""
        return f"{self.name}:{self.model_name}"

    @abstractmethod
    def generate(self, prompt_ids: list[int], settings: SamplingSettings, *,
                 stop: threading.Event | None = None, on_text: OnText | None = None,
                 on_prefill: OnPrefill | None = None) -> Completion:
        """Continue `prompt_ids`, calling `on_text` with each new piece of text, and
        `on_prefill` after each batch of the prompt it evaluates (engines that read the
        prompt themselves; a remote server does not say).

        Honours `stop` between prompt batches and between generated tokens, and returns
        what was produced so far (finish "stopped"). Ends at the end-of-text token
        ("eos"), after settings.max_tokens ("length") or when the context is full
        ("context"). Raises ContextOverflow if the prompt itself does not fit.
        """

    def check_fits(self, prompt_ids: list[int]) -> None:
        if len(prompt_ids) >= self.n_ctx:
            raise ContextOverflow(f"the prompt has {len(prompt_ids)} tokens but the context holds "
                                  f"{self.n_ctx}; shorten it or attach fewer files")

    def close(self) -> None:
        """Free the model's memory."""


class Timer:
    """Wall-clock marks for GenerationStats."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class GenerationRun:
    """The bookkeeping every engine's generate() shares: checks, stop, stats, streaming."""

    def __init__(self, engine: Engine, prompt_ids: list[int], stop: threading.Event | None,
                 on_text: OnText | None, settings: SamplingSettings | None = None):
        if not prompt_ids:
            raise XGenError("cannot generate from an empty prompt")
        engine.check_fits(prompt_ids)
        self.engine = engine
        self.timer = Timer()
        self.stats = GenerationStats(prompt_tokens=len(prompt_ids))
        self.stream = ReplyDecoder(on_text, settings.stop_strings if settings else ())
        self.out: list[int] = []
        self._ends: list[int] = []  # characters decoded after each token
        self._stop = stop

    def stopped(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def emit(self, token: int, data: bytes | None = None) -> bool:
        """Record a generated token and stream its text (its bytes, if the caller has them).
        True when the reply has reached a stop string: the caller finishes with "eos"."""
        self.out.append(token)
        if len(self.out) == 1:
            self.stats.seconds_to_first_token = self.timer.elapsed()
        hit = self.stream.push(self.engine.token_bytes([token]) if data is None else data)
        self._ends.append(self.stream.decoded)
        return hit

    def finish(self, reason: str) -> Completion:
        self.stats.finish = reason
        self.stats.generated = self.stats.generated or len(self.out)
        self.stats.seconds = self.timer.elapsed()
        text = self.stream.close()
        ids = self.out
        if self.stream.stop_at is not None:  # the reply is the tokens before the stop string
            ids = [t for t, end in zip(self.out, self._ends) if end <= self.stream.stop_at]
        return Completion(text, ids, self.stats)


class TiktokenVocab:
    """tokenize/token_bytes for engines that tokenize with the XGen tiktoken tokenizer."""

    _tokenizer: "XGenTokenizer"

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return self._tokenizer.encode(text, allow_special=special)

    def token_bytes(self, ids: list[int]) -> bytes:
        # Control tokens (end-of-text, FIM markers) have no text in a reply.
        return self._tokenizer.decode_bytes([i for i in ids if i not in CONTROL_IDS])
