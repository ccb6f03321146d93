"""Summaries of documents of any length, without silent truncation.

One text source: a loaded Document is one window of text; a file too large to load (or
standard input over the loader's limit: a LargeTextFile) is many windows, read in order
and never held whole. The text is split on paragraph and sentence boundaries into parts
that fill the context (map), each part is summarized, and the partial summaries are
combined, in groups that fit, until one final call writes the summary in the requested
form (reduce). Every character is read by the model once in the map step, so prompt
tokens per document token stay close to 1. A document whose text fits the context in
one window is summarized in one call instead.

A partial summary cut at its cap is redone once with a tighter target written *after*
the part's text: the redo's prompt shares the part's prompt up to the end of the text,
so the engine keeps that prefix in its KV cache and only reads the new instruction.

Partial summaries are cached by (model, part text, prompt, settings): a re-run, or the
same document with another final form, skips the map step. Each cached entry is tagged
with the document's content hash, so deleting the sessions that hold the document
deletes them (a stream's hash is known once it is read to the end: its earlier entries
are tagged then).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

from assistant.chunking import split_document
from assistant.documents import Document, LargeTextFile
from assistant.engines.base import Completion, Engine, OnText, SamplingSettings
from assistant.prompt import CHAT, PromptStyle, defuse_turn_markers, single_turn
from assistant.replytext import clean_reply
from assistant.summary_records import (MemoryCache, SummaryCache, SummaryFailed, SummaryForm, SummaryResult,
                                       SummaryStats)
from models.errors import XGenError

PROMPT_VERSION = 2  # bump when the wording below changes: it invalidates cached parts

# The same for every part (no part number), so each part's prompt shares the previous one's
# ids up to its text and the engine reads the instruction once per document, not per part.
MAP_INSTRUCTION = ('Summarize this part of the document "{name}". Keep the key facts, '
                   "names, numbers, dates and conclusions, and add nothing that is not in the text.\n\n")
GROUP_INSTRUCTION = ('Below are summaries of consecutive parts of the document "{name}". Combine them '
                     "into one paragraph that keeps every key fact, and add nothing that is not in them.\n\n")
FINAL_INSTRUCTION = ('Below are summaries of consecutive parts of the document "{name}". Combine them '
                     "into {form}. Add nothing that is not in them.\n\n")
SINGLE_INSTRUCTION = 'Summarize the document "{name}" as {form}. Add nothing that is not in the text.\n\n'
# After the text of a part whose summary was cut at its cap (see the module docstring).
TIGHTER = "\n\nUse at most {words} words."

TextSource = Document | LargeTextFile
# (stage, done, total). Stages: "map" (parts done, of a text read in one window), "read"
# (bytes read, of a text read in windows; total 0 while unknown, for standard input),
# "combine level N" (groups), "final" (0 then 1), and within any of them "prompt" (tokens
# of the current call's prompt read so far, of its length, from engines that report it),
# "call" as each call starts (its prompt's tokens, of the engine's context: any engine)
# and "speed" after each call (the tokens it wrote after its first, in how many
# milliseconds: its writing rate; the parts' text is not streamed, so not counted live).
ProgressFn = Callable[[str, int, int], None]
CUT = ("length", "context")  # finish reasons of a reply that did not end by itself


@dataclass
class _Job:
    """One summary in progress: what its steps count into, report to and stop on."""

    source: TextSource
    stats: SummaryStats
    stop: threading.Event
    progress: ProgressFn | None
    on_text: OnText | None
    started: float = field(default_factory=time.perf_counter)
    # Cache entries read or written before the source's content hash was known (a stream's).
    untagged: list[tuple[str, str]] = field(default_factory=list)
    parts_total: int = 0  # known from the start when the text is one window

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def on_prefill(self) -> Callable[[int, int], None] | None:
        if self.progress is None:
            return None
        return lambda done, total: self.progress("prompt", done, total)


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
        self.tighter = TIGHTER.format(words=max(20, int(self.part_tokens / 1.6 * 0.6)))

    # -- prompts -------------------------------------------------------------------

    def _prompt(self, *parts: str) -> list[int]:
        # Each part is tokenized on its own, so prompts with the same first parts share
        # their ids up to there (the redo of a cut part relies on it).
        # The parts hold document text: its turn markers are defused (instructions have none).
        return single_turn(self.engine.tokenize, self.style, *(defuse_turn_markers(p) for p in parts))

    def _overhead(self, *instructions: str) -> int:
        return len(self._prompt(*instructions))

    def _budget(self, instruction: str) -> int:
        """Tokens of text a part-sized call can take: the context less its instruction, the
        tighter target of a redo and the partial summary's room."""
        budget = self.engine.n_ctx - self._overhead(instruction, self.tighter) - self.part_tokens
        if budget < 64:
            raise XGenError(f"the context ({self.engine.n_ctx} tokens) is too small to summarize in parts")
        return budget

    # -- the algorithm -----------------------------------------------------------

    def summarize(self, source: TextSource, form: SummaryForm = SummaryForm(), *,
                  stop: threading.Event | None = None, on_text: OnText | None = None,
                  on_progress: ProgressFn | None = None) -> SummaryResult:
        """Summarize a loaded Document or a LargeTextFile read window by window (see the
        module docstring). Only the current window or two and the partial summaries are
        held in memory. Progress is in parts when the text is one window, in bytes when
        it is several (the number of parts is then not known in advance)."""
        self._check_length_fits(source.name, form)
        job = _Job(source, SummaryStats(parts=0), stop or threading.Event(), on_progress, on_text)
        partials: list[str] = []
        try:
            return self._summarize(job, form, partials)
        except SummaryFailed:
            raise
        except XGenError as exc:
            if not partials:
                raise
            raise SummaryFailed(exc, [clean_reply(p) for p in partials], len(partials) - job.stats.cut_parts,
                                job.parts_total) from exc

    def _check_length_fits(self, name: str, form: SummaryForm) -> None:
        """A summary asked for in words must fit the context with its instruction and some
        text to summarize; said up front, not as "partial summaries are too long to combine"."""
        if form.kind != "words":
            return
        room = self.engine.n_ctx - self._overhead(FINAL_INSTRUCTION.format(name=name, form=form.describe())) - 64
        need = form.answer_tokens(self.final_tokens)
        if need > room:
            raise XGenError(f"a summary of {form.words:,} words needs about {need:,} tokens to write, more than the "
                            f"model's context ({self.engine.n_ctx:,} tokens) leaves; ask for at most about "
                            f"{SummaryForm.words_within(room):,} words")

    def _summarize(self, job: _Job, form: SummaryForm, partials: list[str]) -> SummaryResult:
        """`summarize`, collecting the part summaries in `partials` as they are done."""
        source = job.source
        instruction = MAP_INSTRUCTION.format(name=source.name)
        budget = self._budget(instruction)
        carry = ""  # the last, possibly short, part of a window joins the next window
        done_bytes = window_start = 0  # bytes summarized so far (estimated inside a window); before the window
        whole = False
        for window, consumed, first, last in _windows(source):
            text = carry + window
            whole = first and last
            if whole and (result := self._single_pass(job, text, form)) is not None:
                return result
            chunks = split_document(Document(source.source, source.name, "text", text, ""), budget,
                                    self.engine.count_tokens)
            if not last and chunks:
                carry, chunks = text[chunks[-1].start:], chunks[:-1]
            else:
                carry = ""
            # A 4 MB window holds hundreds of parts: progress moves with each part, not each window.
            position = _byte_position(len(text) - len(window), len(window), window_start, consumed)
            if whole:
                job.stats.parts = job.parts_total = len(chunks)  # known: a stopped summary says of how many
                job.report("map", 0, len(chunks))
            for chunk in chunks:
                if not chunk.text.strip():
                    continue
                summary = self._cached_call(instruction, chunk.text, job)
                if summary is None:
                    return self._finish(job, "", stopped=True, partials=partials,
                                        note=_stopped_note(len(partials), len(chunks) if whole else 0,
                                                           job.stats.cut_parts))
                partials.append(summary.strip())
                job.stats.parts = max(job.stats.parts, len(partials))
                job.stats.document_tokens += chunk.n_tokens
                if whole:
                    job.report("map", len(partials), len(chunks))
                else:
                    done_bytes = max(done_bytes, position(chunk.end))
                    job.report("read", done_bytes, source.size or 0)  # 0: not known yet (standard input)
            window_start = consumed
        if not whole:
            job.report("read", source.size or 0, source.size or 0)
        if not partials:
            raise XGenError(f"{source.name} has no text: it holds only whitespace")
        self._tag_untagged(job)
        return self._reduce(job, partials, form)

    def _single_pass(self, job: _Job, text: str, form: SummaryForm) -> SummaryResult | None:
        """The summary in one call, if the whole text fits the context with its answer."""
        n_tokens = self.engine.count_tokens(text)
        single = SINGLE_INSTRUCTION.format(name=job.source.name, form=form.describe())
        budget = form.answer_tokens(self.final_tokens)
        if n_tokens + self._overhead(single) + budget > self.engine.n_ctx:
            return None
        job.stats.document_tokens, job.stats.parts = n_tokens, 1
        return self._write_final(job, self._prompt(single, text), budget, [])

    def _reduce(self, job: _Job, partials: list[str], form: SummaryForm) -> SummaryResult:
        """Combine partials in groups that fit until one final call can take them all."""
        n_ctx = self.engine.n_ctx
        name = job.source.name
        final_budget = form.answer_tokens(self.final_tokens)
        texts = partials
        final = FINAL_INSTRUCTION.format(name=name, form=form.describe())
        while self._joined_tokens(texts) + self._overhead(final) + final_budget > n_ctx:
            job.stats.levels += 1
            group_instruction = GROUP_INSTRUCTION.format(name=name)
            groups = self._groups(texts, self._budget(group_instruction))
            if len(groups) >= len(texts):
                raise XGenError("partial summaries are too long to combine in this context")
            merged = []
            for g, group in enumerate(groups, 1):
                job.report(f"combine level {job.stats.levels}", g - 1, len(groups))
                text = self._cached_call(group_instruction, _join(group), job)
                if text is None:
                    return self._finish(job, "", stopped=True, partials=partials,
                                        note="stopped while combining partial summaries")
                merged.append(text.strip())
            texts = merged
        return self._write_final(job, self._prompt(final, _join(texts)), final_budget, partials)

    def _joined_tokens(self, texts: list[str]) -> int:
        return self.engine.count_tokens(_join(texts))

    def _groups(self, texts: list[str], budget: int) -> list[list[str]]:
        groups: list[list[str]] = [[]]
        for text in texts:
            if groups[-1] and self._joined_tokens(groups[-1] + [text]) > budget:
                groups.append([])
            groups[-1].append(text)
        return groups

    def _call(self, job: _Job, prompt: list[int], max_tokens: int, on_text: OnText | None = None) -> Completion:
        settings = SamplingSettings(**{**asdict(self.settings), "max_tokens": max_tokens})
        job.report("call", len(prompt), self.engine.n_ctx)
        done = self.engine.generate(prompt, settings, stop=job.stop, on_text=on_text, on_prefill=job.on_prefill())
        job.stats.model_calls += 1
        writing = done.stats.seconds - done.stats.seconds_to_first_token
        if done.stats.generated > 1 and writing > 0:
            job.report("speed", done.stats.generated - 1, max(round(writing * 1000), 1))
        job.stats.prompt_tokens += done.stats.prompt_tokens
        job.stats.prompt_tokens_evaluated += done.stats.prompt_evaluated
        job.stats.tokens_generated += done.stats.generated
        return done

    def _write_final(self, job: _Job, prompt: list[int], max_tokens: int, partials: list[str]) -> SummaryResult:
        """The summary the user reads, streamed. Cut at its cap, it is continued (the same ids,
        so the engine only evaluates the new tokens) within half its budget again and what
        the context has left; still cut, it is marked so."""
        job.report("final", 0, 1)
        done = self._call(job, prompt, max_tokens, job.on_text)
        if done.stats.finish == "length":
            room = self.engine.n_ctx - len(prompt) - len(done.token_ids) - 1
            extra = min(max_tokens // 2, room)
            if extra >= 16:
                more = self._call(job, prompt + done.token_ids, extra, job.on_text)
                done = Completion(done.text + more.text, done.token_ids + more.token_ids, more.stats)
        if done.stats.finish in CUT:
            job.stats.cut_final = True
        job.report("final", 1, 1)
        stopped = done.stats.finish == "stopped"
        # Every stopped summary says where it stopped in a note (the app says it once, from there).
        return self._finish(job, done.text, stopped=stopped, partials=partials,
                            note="stopped while writing the summary" if stopped else None)

    def _cached_call(self, instruction: str, body: str, job: _Job) -> str | None:
        """A partial summary from the cache or the model; None if stopped midway.

        A summary cut at its cap is redone once with a tighter target after the text (on
        the evaluated prefix, see the module docstring); one still cut is used (and counted
        in the stats) but never cached as if it were complete."""
        key = self._cache_key(instruction, body)
        cached = self.cache.cache_get(key)
        if cached is not None:
            job.stats.cached_parts += 1
            self._keep(job, key, cached)  # tagged again if its entry was written before the hash was known
            return cached
        if job.stop.is_set():
            return None
        done = self._call(job, self._prompt(instruction, body), self.part_tokens)
        if done.stats.finish in CUT:
            done = self._call(job, self._prompt(instruction, body, self.tighter), self.part_tokens)
        if done.stats.finish == "stopped":
            return None
        if done.stats.finish in CUT:
            job.stats.cut_parts += 1
            return done.text
        self._keep(job, key, done.text, write=True)
        return done.text

    def _keep(self, job: _Job, key: str, text: str, *, write: bool = False) -> None:
        tag = job.source.sha256 or None
        if write:
            self.cache.cache_put(key, text, tag)
        if tag is None:
            job.untagged.append((key, text))

    def _tag_untagged(self, job: _Job) -> None:
        """Tag the entries of a stream written before its content hash was known."""
        tag = job.source.sha256 or None
        if tag is not None:
            for key, text in job.untagged:
                self.cache.cache_put(key, text, tag)
        job.untagged.clear()

    def _cache_key(self, instruction: str, body: str) -> str:
        # Everything that changes the text: the model file and its settings (not its display
        # name: two quantizations of one checkpoint share that), the context size (it sets
        # the parts), the prompt wording and version, and the sampling settings.
        material = json.dumps({
            "v": PROMPT_VERSION, "model": self.engine.identity, "n_ctx": self.engine.n_ctx,
            "style": self.style.name, "instruction": instruction,
            "body": hashlib.sha256(body.encode()).hexdigest(),
            "max_tokens": self.part_tokens, "settings": asdict(self.settings),
        }, sort_keys=True)
        return "summary-part:" + hashlib.sha256(material.encode()).hexdigest()

    @staticmethod
    def _finish(job: _Job, text: str, *, stopped: bool, partials: list[str] | None = None,
                note: str | None = None) -> SummaryResult:
        stats = job.stats
        stats.seconds = time.perf_counter() - job.started
        notes = [note] if note else []
        if stats.cut_parts:
            notes.append(f"{stats.cut_parts} partial summar{'ies were' if stats.cut_parts != 1 else 'y was'} "
                         f"cut at the length limit even with a tighter target; not cached, so a re-run "
                         f"redoes {'them' if stats.cut_parts != 1 else 'it'}")
        if stats.cut_final and not stopped:
            notes.append("the summary was cut at its length limit; ask for fewer words (--words) "
                         "or bullet points")
        return SummaryResult(clean_reply(text).strip(), stats, stopped, [clean_reply(p) for p in partials or []], notes)


def _windows(source: TextSource) -> Iterator[tuple[str, int, bool, bool]]:
    """(text, bytes read so far, first, last) for each window of the source. A Document
    is one window; a LargeTextFile is read one window ahead, so its last one is known as
    such (and its content hash is known while that one is summarized)."""
    if isinstance(source, Document):
        yield source.text, 0, True, True
        return
    ahead = source.windows()
    held = next(ahead, None)
    first = True
    while held is not None:
        following = next(ahead, None)
        yield held[0], held[1], first, following is None
        held, first = following, False


def _byte_position(carry_chars: int, window_chars: int, window_start: int, window_end: int) -> Callable[[int], int]:
    """Map a character offset in (carry + window) to an estimated byte offset in the file:
    the carried text was counted with the previous window; the window's own characters
    are spread evenly over its bytes (decoding makes the exact mapping uneven)."""
    span = window_end - window_start

    def position(chars: int) -> int:
        inside = min(max(chars - carry_chars, 0), window_chars)
        return window_start + (span * inside // window_chars if window_chars else 0)

    return position


def _stopped_note(done: int, total: int, cut: int) -> str:
    """What a summary stopped after `done` parts (of `total`, if known) keeps: only the part
    summaries that were not cut are cached (the note on cut parts says the rest)."""
    of = f" of {total}" if total else ""
    kept = done - cut
    if not cut:
        return f"stopped after {done}{of} parts; their summaries are cached, so a re-run continues from there"
    if not kept:
        return f"stopped after {done}{of} parts; none of their summaries is cached"
    return f"stopped after {done}{of} parts; {kept} of their summaries are cached, so a re-run starts with those"


def _join(texts: list[str]) -> str:
    return "\n\n".join(f"[Part {i}]\n{t}" for i, t in enumerate(texts, 1))
