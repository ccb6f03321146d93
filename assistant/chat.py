"""Chat with files: numbered passages in the prompt, answers that cite them.

The passages come from the library index (assistant/passages.py: the attached files and
folders). They are numbered in order of first appearance in the session (`Numbering`),
so a marker like [3] always resolves to the same file and line range. If every passage
fits the context they all go in with the first question; otherwise a search of the index
picks the passages for the question (and the recent questions) and the user is told how
many were left out. The prompt only ever grows: a follow-up question appends its turn
(and any newly retrieved passages), so the engine re-uses the cached prefix and only
evaluates the new tokens.

A resumed session starts with its earlier turns (`earlier`): the model's view is then
rebuilt from the most recent turns that fit a share of the context, before the new
question and its passages. The same rebuild happens when the context fills up.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from assistant.engines.base import ContextOverflow, Engine, GenerationStats, OnText, SamplingSettings
from assistant.passages import Found, Scope
from assistant.prompt import CHAT, PromptBuilder, PromptStyle, defuse_turn_markers
from assistant.replytext import clean_reply
from assistant.safetext import valid_text
from models.errors import XGenError

if TYPE_CHECKING:
    from assistant.store import Message

INSTRUCTION = ("Answer the question using only the numbered passages below. After each statement, "
               "cite the passages it comes from by their numbers in square brackets, like [2]. "
               "If the passages do not contain the answer, say so.\n\n")
MORE_PASSAGES = "More passages:\n\n"
CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
PASSAGE_SHARE = 3 / 4  # of the free context, kept for passages when earlier turns compete for it
RETRIEVED = 40  # passages a search returns for a question (more than any context holds here)
LABEL_TOKENS = 8  # about what a passage's "[n] name:12-30" line adds to its text


class NoRoomForDocuments(XGenError):
    """Not one passage of the attached files fits beside the question and the reply."""


@dataclass(frozen=True)
class Passage:
    number: int
    found: Found

    @property
    def label(self) -> str:
        return self.found.location()

    @property
    def text(self) -> str:
        return self.found.text

    def render(self) -> str:
        return render_passage(self.number, self.found)


def render_passage(number: int, found: Found) -> str:
    return f"[{number}] {found.location()}\n{defuse_turn_markers(found.text.strip())}\n\n"


class Numbering:
    """The passage numbers of one session, in order of first appearance: once given, a
    number always means the same passage (file, range and text), whatever the searches
    find. A resumed session is seeded with the numbers its replies recorded (`seed`);
    a number is never given twice."""

    def __init__(self):
        self._numbers: dict[tuple, int] = {}
        self._by_number: dict[int, Passage] = {}
        self.next_number = 1

    def seed(self, number: int, key: tuple) -> None:
        """A number an earlier run gave to the passage with this key."""
        self._numbers.setdefault(key, number)
        self.next_number = max(self.next_number, number + 1)

    def known(self, found: Found) -> Passage | None:
        number = self._numbers.get(found.key)
        if number is None:
            return None
        return self._by_number.get(number) or Passage(number, found)

    def number(self, found: Found) -> Passage:
        number = self._numbers.get(found.key)
        if number is None:
            number = self._numbers[found.key] = self.next_number
            self.next_number += 1
        passage = self._by_number.get(number)
        if passage is None:
            passage = self._by_number[number] = Passage(number, found)
        return passage

    def get(self, number: int) -> Passage | None:
        return self._by_number.get(number)

    @property
    def passages(self) -> list[Passage]:
        """The passages given in this run, by number."""
        return [self._by_number[n] for n in sorted(self._by_number)]


@dataclass(frozen=True)
class Turn:
    """An earlier question and its answer, as the store keeps them."""

    question: str
    answer: str


@dataclass
class Answer:
    question: str
    text: str
    citations: list[Passage]
    stats: GenerationStats
    notes: list[str] = field(default_factory=list)
    passages_added: list[int] = field(default_factory=list)  # numbers shown to the model this turn
    sources: list[Passage] = field(default_factory=list)  # every passage in the model's view
    passages_total: int = 0

    @property
    def stopped(self) -> bool:
        return self.stats.finish == "stopped"

    @property
    def cut_short(self) -> bool:
        """The reply ended at its token cap or at the end of the context, not where the model ended it."""
        return self.stats.finish in ("length", "context")


@dataclass
class PreparedTurn:
    """A question checked against the budget, ready to generate (nothing stored yet)."""

    question: str
    ids: list[int]
    passages: list[Passage]
    notes: list[str]
    rebuilt: bool  # the model's view was started afresh for this turn
    total: int = 0  # passages of the attached files


def default_answer_tokens(n_ctx: int) -> int:
    """Room kept for a reply: 512 tokens, less in small contexts so passages still fit."""
    return max(64, min(512, n_ctx // 4))


def cited_numbers(text: str) -> list[int]:
    """Passage numbers cited in `text`, in order of first mention."""
    seen: list[int] = []
    for match in CITATION.finditer(text):
        for part in re.split(r"[,;]", match.group(1)):
            number = int(part)
            if number not in seen:
                seen.append(number)
    return seen


def not_given_note(numbers: list[int]) -> str:
    """The note on an answer citing passages the model was not given (it made the numbers
    up, or took them from elsewhere): such a citation points at nothing; "" if none."""
    if not numbers:
        return ""
    cited = " ".join(f"[{n}]" for n in numbers)
    one = len(numbers) == 1
    return (f"the answer cites {cited}, which {'was' if one else 'were'} not given to the model: "
            f"{'that citation points' if one else 'those citations point'} at no passage")


def question_part(question: str) -> str:
    return f"Question: {question.strip()}"


class ChatSession:
    """The model's view of one conversation: passages shown, turns, and the prompt ids."""

    def __init__(self, engine: Engine, scope: Scope, *, style: PromptStyle = CHAT,
                 settings: SamplingSettings | None = None, answer_tokens: int | None = None,
                 earlier: list[Turn] | None = None, numbering: Numbering | None = None):
        self.engine = engine
        self.scope = scope
        self.style = style
        answer_tokens = answer_tokens or default_answer_tokens(engine.n_ctx)
        settings = settings or SamplingSettings()
        self.settings = replace(settings, max_tokens=min(settings.max_tokens, answer_tokens),
                                stop_strings=settings.stop_strings or style.stop_strings)
        self.answer_tokens = answer_tokens
        self.numbering = numbering or Numbering()
        self._shown: set[int] = set()
        self._builder: PromptBuilder | None = None  # None: build the view on the next question
        self._size: tuple[int, int | None] = (0, 0)  # (passages, tokens) of the attached files, this question
        self.earlier: list[Turn] = list(earlier or [])
        self.history: list[Answer] = []

    @property
    def context_used(self) -> int:
        return len(self._builder.ids) if self._builder is not None else 0

    @property
    def passages(self) -> list[Passage]:
        """The passages numbered so far (shown to the model in this session)."""
        return self.numbering.passages

    def passage(self, number: int) -> Passage | None:
        return self.numbering.get(number)

    def _turns(self) -> list[Turn]:
        return self.earlier + [Turn(a.question, a.text) for a in self.history]

    def _turn_parts(self, question: str, passages: list[Passage], shown: set[int]) -> list[str]:
        parts: list[str] = []
        if passages:
            parts.append(INSTRUCTION if not shown else MORE_PASSAGES)
            parts += [p.render() for p in sorted(passages, key=lambda p: p.number)]
        elif not shown and self._size[0]:
            parts.append(INSTRUCTION)
        parts.append(question_part(question))
        return parts

    def _passages_need(self) -> int | None:
        """Tokens all the attached passages take in the prompt (None: more than any context)."""
        n, tokens = self._size
        return None if tokens is None else tokens + LABEL_TOKENS * n

    # -- the model's view ---------------------------------------------------------------

    def _fresh_view(self, question: str) -> tuple[PromptBuilder, int, int]:
        """A new builder holding the most recent turns that fit; (builder, kept, left out)."""
        builder = PromptBuilder(self.engine.tokenize, self.style)
        turns = self._turns()
        fixed = self.answer_tokens + builder.cost(*self._turn_parts(question, [], set()))
        free = self.engine.n_ctx - fixed
        need = self._passages_need()
        budget = free - (int(free * PASSAGE_SHARE) if need is None else min(need, int(free * PASSAGE_SHARE)))
        kept: list[list[int]] = []
        used = 0
        for turn in reversed(turns):  # the most recent first
            ids = (PromptBuilder(self.engine.tokenize, self.style).user_turn(question_part(turn.question))
                   .reply(self.engine.tokenize(turn.answer.strip())).ids)
            if used + len(ids) > budget:
                break
            kept.append(ids)
            used += len(ids)
        builder.start()
        for ids in reversed(kept):
            builder.token_ids(ids)
        return builder, len(kept), len(turns) - len(kept)

    def _choose(self, builder: PromptBuilder, shown: set[int], question: str) -> list[Passage]:
        """Passages to add this turn within what the context has left: all of them when
        they fit (as few as a context holds), else the best the index finds."""
        room = self.engine.n_ctx - len(builder.ids) - self.answer_tokens
        room -= builder.cost(*self._turn_parts(question, [], shown))
        n_total = self._size[0]
        if not n_total or len(shown) >= n_total:
            return []
        need = self._passages_need()
        if need is not None and need <= self.engine.n_ctx:
            unseen = [f for f in self.scope.every(n_total) if not self._was_shown(f, shown)]
            if sum(f.n_tokens + LABEL_TOKENS for f in unseen) <= room:
                return [self.numbering.number(f) for f in unseen]
        # Retrieving: keep half of what is left for follow-up questions, but never so much
        # that the best passage that fits at all is left out.
        limit = RETRIEVED + len(shown)
        ranked = self.scope.retrieve(question, [t.question for t in self._turns()], limit=limit)
        if not ranked:  # no word of the question is in the files: their beginnings
            ranked = self.scope.every(limit)
        share = room // 2
        chosen: list[Passage] = []
        used = 0
        for f in ranked:
            if self._was_shown(f, shown):
                continue
            limit = share if chosen else room
            if used + f.n_tokens > limit:
                continue  # its text alone does not fit: no need to count it with its label
            known = self.numbering.known(f)
            cost = len(self.engine.tokenize(render_passage(known.number if known else self.numbering.next_number, f)))
            if used + cost <= limit:
                chosen.append(self.numbering.number(f))
                used += cost
        return chosen

    def _was_shown(self, found: Found, shown: set[int]) -> bool:
        known = self.numbering.known(found)
        return known is not None and known.number in shown

    def prepare(self, question: str) -> PreparedTurn:
        """Check the question against the budget and lay out its prompt; nothing is generated.

        Raises XGenError for an empty question, ContextOverflow when the question alone
        does not fit, and NoRoomForDocuments when files are attached but not one passage
        fits beside the question and the reply.
        """
        question = valid_text(question).strip()
        if not question:
            raise XGenError("the question is empty")
        notes: list[str] = []
        self._size = self.scope.size(count_tokens_below=self.engine.n_ctx)
        builder, shown, rebuilt = self._builder, self._shown, False
        probe = PromptBuilder(self.engine.tokenize, self.style)
        alone = probe.cost(*self._turn_parts(question, [], set())) + self.answer_tokens
        if alone > self.engine.n_ctx:
            raise ContextOverflow(
                f"the question needs {alone - self.answer_tokens:,} tokens and {self.answer_tokens:,} are kept "
                f"for the reply, but the context holds {self.engine.n_ctx:,}; shorten the question, or make "
                f"room with a smaller --max-tokens or a larger --ctx")
        if builder is None or len(builder.ids) + builder.cost(*self._turn_parts(question, [], shown)) \
                + self.answer_tokens > self.engine.n_ctx:
            was_full = builder is not None
            builder, in_view, left_out = self._fresh_view(question)
            shown, rebuilt = set(), True
            if left_out:
                notes.append(f"{left_out} earlier turn{'s' if left_out != 1 else ''} of {in_view + left_out} "
                             f"did not fit the context and {'were' if left_out != 1 else 'was'} left out of "
                             f"the model's view" + (" (the context was full)" if was_full else ""))
        passages = self._choose(builder, shown, question)
        total = self._size[0]
        if total and not passages and not shown:
            raise NoRoomForDocuments(
                f"no passage of the attached files fits the context of {self.engine.n_ctx:,} tokens beside the "
                f"question and the {self.answer_tokens:,} tokens kept for the reply; make room with a smaller "
                f"--max-tokens or a larger --ctx")
        given = len(shown) + len(passages)
        if given < total:
            notes.append(f"{total - given:,} of {total:,} passages did not fit the context; the {given} that "
                         f"best match the questions were given to the model")
        ids = list(builder.ids)
        turn = PromptBuilder(self.engine.tokenize, self.style)
        turn.ids = ids
        turn.user_turn(*self._turn_parts(question, passages, shown))
        if rebuilt:
            self._builder, self._shown = builder, shown
        return PreparedTurn(question, turn.ids, passages, notes, rebuilt, total)

    def complete(self, prepared: PreparedTurn, *, stop: threading.Event | None = None,
                 on_text: OnText | None = None) -> Answer:
        """Generate the answer to a prepared question and add the turn to the model's view."""
        assert self._builder is not None, "prepare() first"
        done = self.engine.generate(prepared.ids, self.settings, stop=stop, on_text=on_text)
        if not (done.stats.finish == "stopped" and not done.token_ids):  # nothing said: forget the turn
            self._shown |= {p.number for p in prepared.passages}
            self._builder.ids = list(prepared.ids)
            self._builder.reply(done.token_ids)
        in_view = self._shown | {p.number for p in prepared.passages}
        cited = cited_numbers(done.text)
        citations = [p for n in cited if (p := self.passage(n)) and n in in_view]
        answer = Answer(prepared.question, clean_reply(done.text).strip(), citations, done.stats, list(prepared.notes),
                        [p.number for p in prepared.passages],
                        [p for n in sorted(in_view) if (p := self.passage(n))], prepared.total)
        if stray := not_given_note([n for n in cited if n not in in_view]):
            answer.notes.append(stray)
        if answer.cut_short:
            answer.notes.append(f"the answer stopped at its limit of {self.settings.max_tokens} tokens"
                                if done.stats.finish == "length" else "the answer filled the context and was cut")
        self.history.append(answer)
        return answer

    def ask(self, question: str, *, stop: threading.Event | None = None, on_text: OnText | None = None) -> Answer:
        return self.complete(self.prepare(question), stop=stop, on_text=on_text)


# -- a stored conversation, given back to the model -------------------------------------

def session_numbering(messages: list["Message"]) -> Numbering:
    """The passage numbers a stored conversation gave (its replies' meta), to go on with."""
    numbering = Numbering()
    for m in messages:
        for entry in m.meta.get("numbered") or []:
            if isinstance(entry, list) and entry and isinstance(entry[0], int):
                numbering.seed(entry[0], tuple(entry[1:]))
        for c in m.meta.get("citations") or []:  # sessions saved before: never give their numbers again
            if isinstance(c.get("number"), int):
                numbering.next_number = max(numbering.next_number, c["number"] + 1)
        for g in m.meta.get("sources") or []:
            for n in re.findall(r"\[(\d+)\]", str(g.get("numbers", ""))):
                numbering.next_number = max(numbering.next_number, int(n) + 1)
    return numbering


def earlier_turns(messages: list["Message"]) -> list[Turn]:
    """The question/answer pairs of a stored conversation (summaries and empty answers skipped)."""
    turns: list[Turn] = []
    question: str | None = None
    for m in messages:
        if m.role == "user":
            question = m.content
        elif m.role == "assistant" and question is not None:
            if m.content.strip():
                turns.append(Turn(question, m.content))
            question = None
    return turns
