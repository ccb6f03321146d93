"""Summaries of documents of any length, without silent truncation.

A document that fits the context is summarized in one pass. A longer one is split on
paragraph and sentence boundaries into parts that fill the context (map), each part is
summarized, and the partial summaries are combined, in groups that fit, until one
final call writes the summary in the requested form (reduce). Every character is read
by the model exactly once in the map step, so prompt tokens per document token stay
close to 1.

Partial summaries are cached by (model, part text, prompt, settings): a re-run, or the
same document with another final form, skips the map step.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

from assistant.chunking import split_document
from assistant.documents import Document, LargeTextFile
from assistant.engines.base import Completion, Engine, OnText, SamplingSettings
from assistant.prompt import CHAT, PromptStyle, single_turn
from assistant.replytext import clean_reply
from models.errors import XGenError

PROMPT_VERSION = 1  # bump when the wording below changes: it invalidates cached parts

MAP_INSTRUCTION = ('Summarize part {part} of {parts} of the document "{name}". Keep the key facts, '
                   "names, numbers, dates and conclusions, and add nothing that is not in the text.\n\n")
GROUP_INSTRUCTION = ('Below are summaries of consecutive parts of the document "{name}". Combine them '
                     "into one paragraph that keeps every key fact, and add nothing that is not in them.\n\n")
FINAL_INSTRUCTION = ('Below are summaries of consecutive parts of the document "{name}". Combine them '
                     "into {form}. Add nothing that is not in them.\n\n")
STREAM_MAP_INSTRUCTION = ('Summarize part {part} of the long document "{name}". Keep the key facts, '
                          "names, numbers, dates and conclusions, and add nothing that is not in the text.\n\n")
SINGLE_INSTRUCTION = 'Summarize the document "{name}" as {form}. Add nothing that is not in the text.\n\n'

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)
CUT = ("length", "context")  # finish reasons of a reply that did not end by itself
TIGHTER = " Use at most {words} words.\n\n"  # added to an instruction whose reply was cut


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


class Summarizer:
    def __init__(self, engine: Engine, *, style: PromptStyle = CHAT, cache: SummaryCache | None = None,
                 settings: SamplingSettings | None = None, part_tokens: int | None = None,
                 final_tokens: int | None = None):
        self.engine = engine
        self.style = style
        self.cache = cache or MemoryCache()
        settings = settings or SamplingSettings(temperature=0.3, top_k=40, top_p=0.9, repeat_penalty=1.1)
        # A summary is one reply too: it ends where the model would invent a next turn.
        self.settings = replace(settings, stop_strings=settings.stop_strings or style.stop_strings)
        # Lengths of each partial summary and of the final one; small contexts get less.
        self.part_tokens = part_tokens or min(400, engine.n_ctx // 8)
        self.final_tokens = final_tokens or min(700, engine.n_ctx // 4)

    # -- prompts -------------------------------------------------------------------

    def _prompt(self, instruction: str, body: str) -> list[int]:
        return single_turn(self.engine.tokenize, self.style, instruction, body)

    def _overhead(self, instruction: str) -> int:
        return len(self._prompt(instruction, ""))

    # -- the algorithm -----------------------------------------------------------

    def summarize(self, doc: Document, form: SummaryForm = SummaryForm(), *, stop: threading.Event | None = None,
                  on_text: OnText | None = None, on_progress: ProgressFn | None = None) -> SummaryResult:
        started = time.perf_counter()
        stop = stop or threading.Event()
        progress = on_progress or (lambda stage, done, total: None)
        stats = SummaryStats(document_tokens=self.engine.count_tokens(doc.text))
        final_budget = form.answer_tokens(self.final_tokens)
        n_ctx = self.engine.n_ctx

        single = SINGLE_INSTRUCTION.format(name=doc.name, form=form.describe())
        if stats.document_tokens + self._overhead(single) + final_budget <= n_ctx:
            progress("final", 0, 1)
            done = self._final(self._prompt(single, doc.text), final_budget, stats, stop, on_text)
            progress("final", 1, 1)
            return self._finish(done.text, stats, started, stopped=done.stats.finish == "stopped")

        # Map: parts as large as the context allows, so the fixed prompt cost is paid rarely.
        map_overhead = self._overhead(MAP_INSTRUCTION.format(part=999, parts=999, name=doc.name))
        chunks = split_document(doc, self._part_budget(map_overhead), self.engine.count_tokens)
        stats.parts = len(chunks)
        partials: list[str] = []
        for i, chunk in enumerate(chunks, 1):
            progress("map", i - 1, len(chunks))
            instruction = MAP_INSTRUCTION.format(part=i, parts=len(chunks), name=doc.name)
            text = self._cached_call(instruction, chunk.text, self.part_tokens, stats, stop, doc.sha256)
            if text is None:
                return self._finish("", stats, started, stopped=True, partials=partials,
                                    note=f"stopped after {len(partials)} of {len(chunks)} parts; "
                                         "their summaries are cached, so a re-run continues from there")
            partials.append(text.strip())
        progress("map", len(chunks), len(chunks))
        return self._reduce(doc.name, partials, form, stats, started, stop, on_text, progress, doc.sha256)

    def summarize_stream(self, stream: LargeTextFile, form: SummaryForm = SummaryForm(), *,
                         stop: threading.Event | None = None, on_text: OnText | None = None,
                         on_progress: ProgressFn | None = None) -> SummaryResult:
        """Summarize a file too large to load, reading it window by window (map), then
        combining the partial summaries as `summarize` does (reduce). Only the current
        window and the partial summaries are held in memory. The number of parts is not
        known in advance, so progress is in bytes ("read" stage) and the map prompt names
        the part without a total."""
        started = time.perf_counter()
        stop = stop or threading.Event()
        progress = on_progress or (lambda stage, done, total: None)
        stats = SummaryStats(document_tokens=0, parts=0)
        budget = self._part_budget(self._overhead(STREAM_MAP_INSTRUCTION.format(part=99999, name=stream.name)))
        partials: list[str] = []

        def summarize_part(text: str, n_tokens: int) -> bool:
            instruction = STREAM_MAP_INSTRUCTION.format(part=len(partials) + 1, name=stream.name)
            summary = self._cached_call(instruction, text, self.part_tokens, stats, stop, stream.source)
            if summary is None:
                return False
            partials.append(summary.strip())
            stats.parts += 1
            stats.document_tokens += n_tokens
            return True

        carry = ""  # the last, possibly short, part of a window joins the next window
        done_bytes = 0  # bytes of the file summarized so far (estimated inside a window)
        window_start = 0  # bytes consumed before the current window
        for window, consumed in stream.windows():
            doc = Document(stream.source, stream.name, "text", carry + window, "")
            chunks = split_document(doc, budget, self.engine.count_tokens)
            # A 4 MB window holds hundreds of parts: progress moves with each part, not each
            # window (it stayed at "read 4 of 60 MiB" for the whole first window).
            position = _byte_position(len(carry), len(window), window_start, consumed)
            for chunk in chunks[:-1]:
                if not summarize_part(chunk.text, chunk.n_tokens):
                    return self._stopped_stream(stats, started, partials)
                done_bytes = max(done_bytes, position(chunk.end))
                progress("read", done_bytes, stream.size or 0)  # 0: not known yet (standard input)
            carry = doc.text[chunks[-1].start:] if chunks else ""
            window_start = consumed
        if carry.strip():
            if not summarize_part(carry, self.engine.count_tokens(carry)):
                return self._stopped_stream(stats, started, partials)
        progress("read", stream.size, stream.size)
        if not partials:
            raise XGenError(f"{stream.name} has no text: it holds only whitespace")
        return self._reduce(stream.name, partials, form, stats, started, stop, on_text, progress, stream.source)

    def _stopped_stream(self, stats: SummaryStats, started: float, partials: list[str]) -> SummaryResult:
        return self._finish("", stats, started, stopped=True, partials=partials,
                            note=f"stopped after {len(partials)} parts; their summaries are cached, "
                                 "so a re-run continues from there")

    def _part_budget(self, map_overhead: int) -> int:
        budget = self.engine.n_ctx - map_overhead - self.part_tokens
        if budget < 64:
            raise XGenError(f"the context ({self.engine.n_ctx} tokens) is too small to summarize in parts")
        return budget

    def _reduce(self, name: str, partials: list[str], form: SummaryForm, stats: SummaryStats, started: float,
                stop: threading.Event, on_text: OnText | None, progress: ProgressFn,
                source: str | None = None) -> SummaryResult:
        """Combine partials in groups that fit until one final call can take them all."""
        n_ctx = self.engine.n_ctx
        final_budget = form.answer_tokens(self.final_tokens)
        texts = partials
        final = FINAL_INSTRUCTION.format(name=name, form=form.describe())
        while self._joined_tokens(texts) + self._overhead(final) + final_budget > n_ctx:
            stats.levels += 1
            group_instruction = GROUP_INSTRUCTION.format(name=name)
            groups = self._groups(texts, n_ctx - self._overhead(group_instruction) - self.part_tokens)
            if len(groups) >= len(texts):
                raise XGenError("partial summaries are too long to combine in this context")
            merged = []
            for g, group in enumerate(groups, 1):
                progress(f"combine level {stats.levels}", g - 1, len(groups))
                text = self._cached_call(group_instruction, _join(group), self.part_tokens, stats, stop, source)
                if text is None:
                    return self._finish("", stats, started, stopped=True, partials=partials,
                                        note="stopped while combining partial summaries")
                merged.append(text.strip())
            texts = merged
        progress("final", 0, 1)
        done = self._final(self._prompt(final, _join(texts)), final_budget, stats, stop, on_text)
        progress("final", 1, 1)
        return self._finish(done.text, stats, started, stopped=done.stats.finish == "stopped", partials=partials)

    def _joined_tokens(self, texts: list[str]) -> int:
        return self.engine.count_tokens(_join(texts))

    def _groups(self, texts: list[str], budget: int) -> list[list[str]]:
        groups: list[list[str]] = [[]]
        for text in texts:
            if groups[-1] and self._joined_tokens(groups[-1] + [text]) > budget:
                groups.append([])
            groups[-1].append(text)
        return groups

    def _call(self, prompt: list[int], max_tokens: int, stats: SummaryStats, stop: threading.Event,
              on_text: OnText | None = None) -> Completion:
        settings = SamplingSettings(**{**asdict(self.settings), "max_tokens": max_tokens})
        done = self.engine.generate(prompt, settings, stop=stop, on_text=on_text)
        stats.model_calls += 1
        stats.prompt_tokens += done.stats.prompt_tokens
        stats.prompt_tokens_evaluated += done.stats.prompt_evaluated
        stats.tokens_generated += done.stats.generated
        return done

    def _final(self, prompt: list[int], max_tokens: int, stats: SummaryStats, stop: threading.Event,
               on_text: OnText | None) -> Completion:
        """The summary the user reads, streamed. Cut at its cap, it is continued (the same ids,
        so the engine only evaluates the new tokens) within half its budget again and what
        the context has left; still cut, it is marked so."""
        done = self._call(prompt, max_tokens, stats, stop, on_text)
        if done.stats.finish == "length":
            room = self.engine.n_ctx - len(prompt) - len(done.token_ids) - 1
            extra = min(max_tokens // 2, room)
            if extra >= 16:
                more = self._call(prompt + done.token_ids, extra, stats, stop, on_text)
                done = Completion(done.text + more.text, done.token_ids + more.token_ids, more.stats)
        if done.stats.finish in CUT:
            stats.cut_final = True
        return done

    def _cached_call(self, instruction: str, body: str, max_tokens: int, stats: SummaryStats,
                     stop: threading.Event, source: str | None) -> str | None:
        """A partial summary from the cache or the model; None if stopped midway.

        A summary cut at its cap is redone once with a tighter target; one still cut is
        used (and counted in the stats) but never cached as if it were complete."""
        key = self._cache_key(instruction, body, max_tokens)
        cached = self.cache.cache_get(key)
        if cached is not None:
            stats.cached_parts += 1
            return cached
        if stop.is_set():
            return None
        done = self._call(self._prompt(instruction, body), max_tokens, stats, stop)
        if done.stats.finish in CUT:
            tighter = instruction.rstrip() + TIGHTER.format(words=max(20, int(max_tokens / 1.6 * 0.6)))
            done = self._call(self._prompt(tighter, body), max_tokens, stats, stop)
        if done.stats.finish == "stopped":
            return None
        if done.stats.finish in CUT:
            stats.cut_parts += 1
            return done.text
        self.cache.cache_put(key, done.text, source)
        return done.text

    def _cache_key(self, instruction: str, body: str, max_tokens: int) -> str:
        # Everything that changes the text: the model file and its settings (not its display
        # name: two quantizations of one checkpoint share that), the context size (it sets
        # the parts), the prompt wording and version, and the sampling settings.
        material = json.dumps({
            "v": PROMPT_VERSION, "model": self.engine.identity, "n_ctx": self.engine.n_ctx,
            "style": self.style.name, "instruction": instruction,
            "body": hashlib.sha256(body.encode()).hexdigest(),
            "max_tokens": max_tokens, "settings": asdict(self.settings),
        }, sort_keys=True)
        return "summary-part:" + hashlib.sha256(material.encode()).hexdigest()

    @staticmethod
    def _finish(text: str, stats: SummaryStats, started: float, *, stopped: bool,
                partials: list[str] | None = None, note: str | None = None) -> SummaryResult:
        stats.seconds = time.perf_counter() - started
        notes = [note] if note else []
        if stats.cut_parts:
            notes.append(f"{stats.cut_parts} partial summar{'ies were' if stats.cut_parts != 1 else 'y was'} "
                         f"cut at the length limit even with a tighter target; not cached, so a re-run "
                         f"redoes {'them' if stats.cut_parts != 1 else 'it'}")
        if stats.cut_final and not stopped:
            notes.append("the summary was cut at its length limit; ask for fewer words (--words) "
                         "or bullet points")
        return SummaryResult(clean_reply(text).strip(), stats, stopped, [clean_reply(p) for p in partials or []], notes)


def _byte_position(carry_chars: int, window_chars: int, window_start: int, window_end: int) -> Callable[[int], int]:
    """Map a character offset in (carry + window) to an estimated byte offset in the file:
    the carried text was counted with the previous window; the window's own characters
    are spread evenly over its bytes (decoding makes the exact mapping uneven)."""
    span = window_end - window_start

    def position(chars: int) -> int:
        inside = min(max(chars - carry_chars, 0), window_chars)
        return window_start + (span * inside // window_chars if window_chars else 0)

    return position


def _join(texts: list[str]) -> str:
    return "\n\n".join(f"[Part {i}]\n{t}" for i, t in enumerate(texts, 1))
