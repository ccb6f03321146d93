"""Chat with files: numbered passages in the prompt, answers that cite them.

Every attached file is cut into passages of about 200 tokens, numbered once for the
whole session, so a marker like [3] always resolves to the same file and line range.
If every passage fits the context they all go in with the first question; otherwise
BM25 picks the passages for the question (and the recent turns) and the user is told
how many were left out. The prompt only ever grows: a follow-up question appends its
turn (and any newly retrieved passages), so the engine re-uses the cached prefix and
only evaluates the new tokens.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace

from assistant.chunking import Chunk, split_for_retrieval
from assistant.documents import Document
from assistant.engines.base import Engine, GenerationStats, OnText, SamplingSettings
from assistant.prompt import CHAT, PromptBuilder, PromptStyle
from assistant.replytext import clean_reply
from assistant.retrieval import PassageIndex

INSTRUCTION = ("Answer the question using only the numbered passages below. After each statement, "
               "cite the passages it comes from by their numbers in square brackets, like [2]. "
               "If the passages do not contain the answer, say so.\n\n")
MORE_PASSAGES = "More passages:\n\n"
CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


@dataclass(frozen=True)
class Passage:
    number: int
    chunk: Chunk

    @property
    def label(self) -> str:
        return self.chunk.label

    def render(self) -> str:
        return f"[{self.number}] {self.label}\n{self.chunk.text.strip()}\n\n"


@dataclass
class Answer:
    question: str
    text: str
    citations: list[Passage]
    stats: GenerationStats
    notes: list[str] = field(default_factory=list)
    passages_added: list[int] = field(default_factory=list)  # numbers shown to the model this turn

    @property
    def stopped(self) -> bool:
        return self.stats.finish == "stopped"


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


class ChatSession:
    def __init__(self, engine: Engine, documents: list[Document], *, style: PromptStyle = CHAT,
                 settings: SamplingSettings | None = None, answer_tokens: int | None = None,
                 passage_tokens: int = 200):
        self.engine = engine
        self.documents = documents
        self.style = style
        answer_tokens = answer_tokens or default_answer_tokens(engine.n_ctx)
        settings = settings or SamplingSettings()
        self.settings = replace(settings, max_tokens=min(settings.max_tokens, answer_tokens))
        self.answer_tokens = answer_tokens
        chunks = [c for doc in documents for c in split_for_retrieval(doc, passage_tokens, engine.count_tokens)]
        self.passages = [Passage(i, c) for i, c in enumerate(chunks, 1)]
        self._index: PassageIndex | None = None
        self._shown: set[int] = set()
        self._builder = PromptBuilder(engine.tokenize, style)
        self.history: list[Answer] = []

    @property
    def context_used(self) -> int:
        return len(self._builder.ids)

    def passage(self, number: int) -> Passage | None:
        return self.passages[number - 1] if 1 <= number <= len(self.passages) else None

    def _rank(self, question: str) -> list[Passage]:
        if self._index is None:
            self._index = PassageIndex([p.chunk.text for p in self.passages])
        recent = " ".join(a.question for a in self.history[-2:])
        return [self.passages[i] for i in self._index.rank(f"{question} {recent}")]

    def _turn_parts(self, question: str, passages: list[Passage]) -> list[str]:
        parts: list[str] = []
        if passages:
            parts.append(INSTRUCTION if not self._shown else MORE_PASSAGES)
            parts += [p.render() for p in sorted(passages, key=lambda p: p.number)]
        elif not self._shown and self.passages:
            parts.append(INSTRUCTION)
        parts.append(f"Question: {question.strip()}")
        return parts

    def _choose(self, question: str, notes: list[str]) -> list[Passage]:
        """Passages to add this turn within what the context has left."""
        room = self.engine.n_ctx - self.context_used - self.answer_tokens
        room -= self._builder.cost(*self._turn_parts(question, []))
        unseen = [p for p in self.passages if p.number not in self._shown]
        total = sum(p.chunk.n_tokens + 8 for p in unseen)  # + the "[n] label" line
        if not unseen or total <= room:
            return unseen
        room //= 2  # retrieving: keep half of what is left for follow-up questions
        chosen, used = [], 0
        for p in self._rank(question):
            if p.number in self._shown:
                continue
            cost = len(self.engine.tokenize(p.render()))
            if used + cost <= room:
                chosen.append(p)
                used += cost
        left_out = len(unseen) - len(chosen)
        if left_out:
            notes.append(f"{left_out} of {len(self.passages)} passages did not fit the context; "
                         f"the {len(chosen)} that best match the question were used")
        return chosen

    def ask(self, question: str, *, stop: threading.Event | None = None, on_text: OnText | None = None) -> Answer:
        notes: list[str] = []
        minimum = self._builder.cost(*self._turn_parts(question, [])) + self.answer_tokens
        if self.context_used + minimum > self.engine.n_ctx and self.history:
            # Start the model's view afresh; the session keeps every turn.
            self._builder = PromptBuilder(self.engine.tokenize, self.style)
            self._shown = set()
            notes.append("the context was full: earlier turns were dropped from the model's view")
        passages = self._choose(question, notes)
        before = list(self._builder.ids)
        self._builder.user_turn(*self._turn_parts(question, passages))
        done = self.engine.generate(self._builder.ids, self.settings, stop=stop, on_text=on_text)
        if done.stats.finish == "stopped" and not done.token_ids:
            self._builder.ids = before  # nothing was said: forget the turn
        else:
            self._shown |= {p.number for p in passages}
            self._builder.reply(done.token_ids)
        citations = [p for n in cited_numbers(done.text) if (p := self.passage(n)) and n in self._shown]
        answer = Answer(question, clean_reply(done.text).strip(), citations, done.stats, notes,
                        [p.number for p in passages])
        self.history.append(answer)
        return answer
