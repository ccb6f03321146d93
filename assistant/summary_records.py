"""What a summary is asked for and what it gives back: its form, its result and
statistics, the cache of part summaries it reads and fills, and its failure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

from models.errors import XGenError


@dataclass(frozen=True)
class SummaryForm:
    """The shape of the final summary: a paragraph, bullet points, or about N words."""

    kind: str = "paragraph"
    words: int | None = None

    def __post_init__(self):
        if self.kind not in ("paragraph", "bullets", "words"):
            raise XGenError(f"unknown summary form {self.kind!r}; use paragraph, bullets or words")
        if self.kind == "words" and not (self.words and self.words > 0):
            raise XGenError("a summary of N words needs a positive number of words")

    def describe(self) -> str:
        if self.kind == "bullets":
            return "a list of concise bullet points, each on its own line starting with '- '"
        if self.kind == "words":
            return f"a summary of about {self.words} words"
        return "one concise paragraph"

    def answer_tokens(self, default: int) -> int:
        # ~1.4 tokens per English word, with room to finish the sentence.
        return max(64, int(self.words * 1.6) + 32) if self.kind == "words" else default

    @staticmethod
    def words_within(tokens: int) -> int:
        """The most words (a round ten) whose summary answer_tokens keeps within `tokens`."""
        return max(0, int((tokens - 32) / 1.6) // 10 * 10)


class SummaryCache(Protocol):
    def cache_get(self, key: str) -> str | None: ...

    def cache_put(self, key: str, value: str, source: str | None = None) -> None: ...


class MemoryCache:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.sources: dict[str, str | None] = {}

    def cache_get(self, key: str) -> str | None:
        return self.data.get(key)

    def cache_put(self, key: str, value: str, source: str | None = None) -> None:
        self.data[key] = value
        self.sources[key] = source


@dataclass
class SummaryStats:
    document_tokens: int = 0
    parts: int = 1
    levels: int = 0  # reduce levels above the map step (0: single pass or one final call)
    model_calls: int = 0
    cached_parts: int = 0
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    tokens_generated: int = 0
    seconds: float = 0.0
    cut_parts: int = 0  # partial summaries still cut at their length after a tighter retry (not cached)
    cut_final: bool = False  # the summary itself ended at its length limit

    @property
    def evaluated_per_document_token(self) -> float:
        return self.prompt_tokens_evaluated / self.document_tokens if self.document_tokens else 0.0

    def as_dict(self) -> dict:
        return asdict(self) | {"evaluated_per_document_token": round(self.evaluated_per_document_token, 4)}


@dataclass
class SummaryResult:
    text: str
    stats: SummaryStats
    stopped: bool = False
    partials: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class SummaryFailed(XGenError):
    """A summary that failed after some parts were summarized (a server gone midway): the
    message says how many part summaries are cached; `partials` holds them."""

    def __init__(self, cause: XGenError, partials: list[str], cached: int, total: int):
        of = f" of {total}" if total else ""
        super().__init__(f"{cause}; {cached}{of} part{'s' if (total or cached) != 1 else ''} "
                         f"{'are' if cached != 1 else 'is'} cached, so summarizing again continues from there")
        self.partials = partials
