"""Chat with files: numbered passages in the prompt, answers that cite them.

Every attached file is cut into passages of about 200 tokens, numbered once for the
whole session, so a marker like [3] always resolves to the same file and line range.
If every passage fits the context they all go in with the first question; otherwise
BM25 picks the passages for the question (and the recent turns) and the user is told
how many were left out. The prompt only ever grows: a follow-up question appends its
turn (and any newly retrieved passages), so the engine re-uses the cached prefix and
only evaluates the new tokens.

A resumed session starts with its earlier turns (`earlier`): the model's view is then
rebuilt from the most recent turns that fit a share of the context, before the new
question and its passages. The same rebuild happens when the context fills up.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace

from assistant.chunking import Chunk, split_for_retrieval
from assistant.documents import Document
from assistant.engines.base import ContextOverflow, Engine, GenerationStats, OnText, SamplingSettings
from assistant.prompt import CHAT, PromptBuilder, PromptStyle
from assistant.replytext import clean_reply
from assistant.retrieval import PassageIndex
from models.errors import XGenError

INSTRUCTION = ("Answer the question using only the numbered passages below. After each statement, "
               "cite the passages it comes from by their numbers in square brackets, like [2]. "
               "If the passages do not contain the answer, say so.\n\n")
MORE_PASSAGES = "More passages:\n\n"
CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
PASSAGE_SHARE = 3 / 4  # of the free context, kept for passages when earlier turns compete for it


class NoRoomForDocuments(XGenError):
    """Not one passage of the attached files fits beside the question and the reply."""


@dataclass(frozen=True)
class Passage:
    number: int
    chunk: Chunk

    @property
    def label(self) -> str:
        return self.chunk.label

    def render(self) -> str:
        return f"[{self.number}] {self.label}\n{self.chunk.text.strip()}\n\n"


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


def question_part(question: str) -> str:
    return f"Question: {question.strip()}"


class ChatSession:
    """The model's view of one conversation: passages shown, turns, and the prompt ids."""

    def __init__(self, engine: Engine, documents: list[Document], *, style: PromptStyle = CHAT,
                 settings: SamplingSettings | None = None, answer_tokens: int | None = None,
                 passage_tokens: int = 200, earlier: list[Turn] | None = None):
        self.engine = engine
        self.documents = documents
        self.style = style
        answer_tokens = answer_tokens or default_answer_tokens(engine.n_ctx)
        settings = settings or SamplingSettings()
        self.settings = replace(settings, max_tokens=min(settings.max_tokens, answer_tokens),
                                stop_strings=settings.stop_strings or style.stop_strings)
        self.answer_tokens = answer_tokens
        chunks = [c for doc in documents for c in split_for_retrieval(doc, passage_tokens, engine.count_tokens)]
        self.passages = [Passage(i, c) for i, c in enumerate(chunks, 1)]
        self._index: PassageIndex | None = None
        self._shown: set[int] = set()
        self._builder: PromptBuilder | None = None  # None: build the view on the next question
        self.earlier: list[Turn] = list(earlier or [])
        self.history: list[Answer] = []

    @property
    def context_used(self) -> int:
        return len(self._builder.ids) if self._builder is not None else 0

    def passage(self, number: int) -> Passage | None:
        return self.passages[number - 1] if 1 <= number <= len(self.passages) else None

    def _turns(self) -> list[Turn]:
        return self.earlier + [Turn(a.question, a.text) for a in self.history]

    def _rank(self, question: str) -> list[Passage]:
        if self._index is None:
            self._index = PassageIndex([p.chunk.text for p in self.passages])
        recent = " ".join(t.question for t in self._turns()[-2:])
        return [self.passages[i] for i in self._index.rank(f"{question} {recent}")]

    def _turn_parts(self, question: str, passages: list[Passage], shown: set[int]) -> list[str]:
        parts: list[str] = []
        if passages:
            parts.append(INSTRUCTION if not shown else MORE_PASSAGES)
            parts += [p.render() for p in sorted(passages, key=lambda p: p.number)]
        elif not shown and self.passages:
            parts.append(INSTRUCTION)
        parts.append(question_part(question))
        return parts

    def _passage_cost(self, p: Passage) -> int:
        return len(self.engine.tokenize(p.render()))

    # -- the model's view ---------------------------------------------------------------

    def _fresh_view(self, question: str) -> tuple[PromptBuilder, int, int]:
        """A new builder holding the most recent turns that fit; (builder, kept, left out)."""
        builder = PromptBuilder(self.engine.tokenize, self.style)
        turns = self._turns()
        fixed = self.answer_tokens + builder.cost(*self._turn_parts(question, [], set()))
        free = self.engine.n_ctx - fixed
        passages_need = sum(p.chunk.n_tokens + 8 for p in self.passages)
        budget = free - min(passages_need, int(free * PASSAGE_SHARE))
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
        """Passages to add this turn within what the context has left."""
        room = self.engine.n_ctx - len(builder.ids) - self.answer_tokens
        room -= builder.cost(*self._turn_parts(question, [], shown))
        unseen = [p for p in self.passages if p.number not in shown]
        total = sum(p.chunk.n_tokens + 8 for p in unseen)  # + the "[n] label" line
        if not unseen or total <= room:
            return unseen
        # Retrieving: keep half of what is left for follow-up questions, but never so much
        # that the best passage that fits at all is left out.
        share = room // 2
        chosen, used = [], 0
        for p in self._rank(question):
            if p.number in shown:
                continue
            cost = self._passage_cost(p)
            if used + cost <= (share if chosen else room):
                chosen.append(p)
                used += cost
        return chosen

    def prepare(self, question: str) -> PreparedTurn:
        """Check the question against the budget and lay out its prompt; nothing is generated.

        Raises XGenError for an empty question, ContextOverflow when the question alone
        does not fit, and NoRoomForDocuments when files are attached but not one passage
        fits beside the question and the reply.
        """
        question = question.strip()
        if not question:
            raise XGenError("the question is empty")
        notes: list[str] = []
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
        if self.passages and not passages and not shown:
            raise NoRoomForDocuments(
                f"no passage of the attached files fits the context of {self.engine.n_ctx:,} tokens beside the "
                f"question and the {self.answer_tokens:,} tokens kept for the reply; make room with a smaller "
                f"--max-tokens or a larger --ctx")
        given = len(shown) + len(passages)
        if given < len(self.passages):
            notes.append(f"{len(self.passages) - given} of {len(self.passages)} passages did not fit the "
                         f"context; the {given} that best match the questions were given to the model")
        ids = list(builder.ids)
        turn = PromptBuilder(self.engine.tokenize, self.style)
        turn.ids = ids
        turn.user_turn(*self._turn_parts(question, passages, shown))
        if rebuilt:
            self._builder, self._shown = builder, shown
        return PreparedTurn(question, turn.ids, passages, notes, rebuilt)

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
        citations = [p for n in cited_numbers(done.text) if (p := self.passage(n)) and n in in_view]
        answer = Answer(prepared.question, clean_reply(done.text).strip(), citations, done.stats, list(prepared.notes),
                        [p.number for p in prepared.passages],
                        [p for p in self.passages if p.number in in_view], len(self.passages))
        if answer.cut_short:
            answer.notes.append(f"the answer stopped at its limit of {self.settings.max_tokens} tokens"
                                if done.stats.finish == "length" else "the answer filled the context and was cut")
        self.history.append(answer)
        return answer

    def ask(self, question: str, *, stop: threading.Event | None = None, on_text: OnText | None = None) -> Answer:
        return self.complete(self.prepare(question), stop=stop, on_text=on_text)
