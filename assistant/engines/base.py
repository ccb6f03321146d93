"""The engine interface: what the assistant needs from a model, whoever runs it.

Three engines implement it: llama.cpp on a GGUF (CPU/Metal/CUDA), the PyTorch model
(bf16 on CUDA, fp32 on CPU) and an OpenAI-compatible HTTP server. Prompts are token
ids, never strings, so document text can never inject control tokens, and each engine
reuses the longest cached prefix of the previous prompt, so a follow-up question only
pays for its new tokens.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator

from assistant.engines.driver import (Completion, GenerationStats, OnPrefill, OnText, SamplingSettings, SilenceWatch,
                                      Step, drive)
from assistant.engines.stops import ReplyDecoder
from models.errors import XGenError
from models.tokenizer import SPECIAL_TOKENS, XGenTokenizer

CONTROL_IDS = frozenset(SPECIAL_TOKENS.values())

__all__ = ["CONTROL_IDS", "Completion", "ContextOverflow", "Engine", "GenerationStats", "OnPrefill", "OnText",
           "ReplyDecoder", "SamplingSettings", "TiktokenVocab", "common_prefix_length"]


class ContextOverflow(XGenError):
    """A prompt that does not fit the model's context window."""


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Engine(ABC):
    """A loaded model. Not thread-safe: one generation at a time per engine."""

    name: str = "engine"  # "llama", "torch" or "remote"
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

    def generate(self, prompt_ids: list[int], settings: SamplingSettings, *,
                 stop: threading.Event | None = None, on_text: OnText | None = None,
                 on_prefill: OnPrefill | None = None) -> Completion:
        """Continue `prompt_ids`, calling `on_text` with each new piece of text, and
        `on_prefill(done, total)` after each batch of the prompt the engine evaluates itself
        (a remote server does not say how far it has read).

        Honours `stop` between prompt batches and between generated tokens, and returns
        what was produced so far (finish "stopped"). Ends at the end-of-text token or a
        stop string ("eos"), after settings.max_tokens ("length") or when the context is
        full ("context"). Raises ContextOverflow if the prompt itself does not fit. The
        rules live in one place, assistant/engines/driver.py; engines only `stream`.
        """
        return drive(self, prompt_ids, settings, stop=stop, on_text=on_text, on_prefill=on_prefill)

    @abstractmethod
    def stream(self, prompt_ids: list[int], settings: SamplingSettings, budget: int,
               stop: threading.Event | None) -> Iterator[Step]:
        """The steps of one reply (see driver.py): Prefilled(n) per prompt batch, then
        token ids (or a server's Text pieces), one per pull. `budget` (>= 1) is the most
        tokens the driver will ask for: an engine may skip work for a token past it. `stop`
        is the caller's event, for an engine that can check it inside a long native call."""

    def silence_watch(self) -> SilenceWatch | None:
        """How long the engine may stay silent (WAITING steps) before the driver gives up."""
        return None

    def check_fits(self, prompt_ids: list[int]) -> None:
        if len(prompt_ids) >= self.n_ctx:
            raise ContextOverflow(f"the prompt has {len(prompt_ids)} tokens but the context holds "
                                  f"{self.n_ctx}; shorten it or attach fewer files")

    def close(self) -> None:
        """Free the model's memory."""


class TiktokenVocab:
    """tokenize/token_bytes for engines that tokenize with the XGen tiktoken tokenizer."""

    _tokenizer: "XGenTokenizer"

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return self._tokenizer.encode(text, allow_special=special)

    def token_bytes(self, ids: list[int]) -> bytes:
        # Control tokens (end-of-text, FIM markers) have no text in a reply.
        return self._tokenizer.decode_bytes([i for i in ids if i not in CONTROL_IDS])
