"""XGen prompts, built from token ids.

Every prompt is a concatenation of segments tokenized on their own: instructions with
the engine's tokenizer as text, document text with special tokens treated as text (a
file containing `<|endoftext|>` reaches the model as the characters, never as the
control token). Chats are append-only: turn n's prompt starts with turn n-1's prompt
and reply ids, so the engine's KV cache covers everything but the new turn.

The inst model's format (model card, ../shared/XGEN.md):

    {system}\n\n### Human: {message}\n### Assistant: {reply}\n### Human: ...

Base models get a plain completion prompt instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from models.registry import XGEN_INST_SYSTEM

Tokenize = Callable[[str], list[int]]  # text -> ids, special tokens as plain text


@dataclass(frozen=True)
class PromptStyle:
    """How turns are laid out; `chat` for xgen-7b-8k-inst, `completion` for base models."""

    name: str
    header: str
    user_prefix: str
    assistant_prefix: str
    turn_end: str
    # Text that starts an invented next turn: generation stops there (every engine).
    stop_strings: tuple[str, ...] = ()


CHAT = PromptStyle("chat", XGEN_INST_SYSTEM + "\n\n", "### Human: ", "\n### Assistant:", "\n",
                  ("### Human:", "### Assistant:"))
COMPLETION = PromptStyle("completion", "", "", "\n\nAnswer:", "\n\n", ("\nQuestion:", "\n\nAnswer:"))


# The chat's turn markers as a document might spell them (### Human:, #### Assistant :).
_TURN_MARKER = re.compile(r"#{3,}([ \t]*(?:Human|Assistant)[ \t]*:)")


def defuse_turn_markers(text: str) -> str:
    """Document text with the chat's turn markers made into headings: a file holding
    `### Human: ...` / `### Assistant: ...` could otherwise forge an earlier exchange
    inside its passage. Made `## Human:`, the model reads a Markdown heading quoted from
    the document, never the template, and GPT-2's BPE gives it as many tokens (one for
    each run of #), so budgets counted on the raw text stay right."""
    return _TURN_MARKER.sub(r"##\1", text)


class PromptBuilder:
    """Accumulates prompt ids segment by segment; `ids` is always a valid prefix."""

    def __init__(self, tokenize: Tokenize, style: PromptStyle = CHAT):
        self.tokenize = tokenize
        self.style = style
        self.ids: list[int] = []
        self._cache: dict[str, list[int]] = {}

    def _fixed(self, text: str) -> list[int]:
        # Template pieces recur every turn; tokenize each once.
        if text not in self._cache:
            self._cache[text] = self.tokenize(text)
        return self._cache[text]

    def start(self) -> "PromptBuilder":
        if not self.ids and self.style.header:
            self.ids += self._fixed(self.style.header)
        return self

    def text(self, text: str) -> "PromptBuilder":
        """Append text (instructions or document content; both tokenized as plain text)."""
        if text:
            self.ids += self.tokenize(text)
        return self

    def token_ids(self, ids: list[int]) -> "PromptBuilder":
        self.ids += ids
        return self

    def user_turn(self, *parts: str | list[int]) -> "PromptBuilder":
        """A human turn ending where the model starts its reply."""
        self.start()
        self.ids += self._fixed(self.style.user_prefix) if self.style.user_prefix else []
        for part in parts:
            if isinstance(part, str):
                self.text(part)
            else:
                self.ids += part
        self.ids += self._fixed(self.style.assistant_prefix)
        return self

    def reply(self, reply_ids: list[int]) -> "PromptBuilder":
        """The model's reply as it generated it (same ids keep the KV cache valid)."""
        self.ids += reply_ids
        self.ids += self._fixed(self.style.turn_end)
        return self

    def cost(self, *parts: str) -> int:
        """Tokens a user turn with these text parts would add (template included)."""
        fixed = len(self._fixed(self.style.user_prefix)) if self.style.user_prefix else 0
        fixed += len(self._fixed(self.style.assistant_prefix))
        if not self.ids and self.style.header:
            fixed += len(self._fixed(self.style.header))
        return fixed + sum(len(self.tokenize(p)) for p in parts if p)


def single_turn(tokenize: Tokenize, style: PromptStyle, *parts: str | list[int]) -> list[int]:
    """A fresh one-turn prompt."""
    return PromptBuilder(tokenize, style).user_turn(*parts).ids
