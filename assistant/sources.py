"""The sources listed under an answer: one type, made by the core, kept in the store, and
rendered by both faces from the same text.

An answer was given some numbered passages; they are listed as groups: a cited passage
alone (with its text), a run of consecutive uncited ones from one file on one line (so
40 passages given do not take 40 lines). The store keeps them in the reply's meta
(`sources`, `passages_given`, `passages_total`, and `citations` with the cited text),
the format sessions have always been saved in, so older sessions read back the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from assistant.chat import Answer, Passage


@dataclass(frozen=True)
class Source:
    """One line of the list: `[3]` or `[3]-[7]`, where the passages are, and whether the
    answer cites it (a cited source is one passage, whose text is kept)."""

    numbers: str
    label: str
    cited: bool
    text: str = ""

    @property
    def line(self) -> str:
        return f"{'* ' if self.cited else ''}{self.numbers} {self.label}"


@dataclass(frozen=True)
class Sources:
    given: int = 0  # passages in the model's view
    total: int = 0  # passages of the attached files
    groups: tuple[Source, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.groups)

    @property
    def heading(self) -> str:
        left = f"; {self.total - self.given} did not fit the context" if self.given < self.total else ""
        return f"Sources ({self.given} of {self.total} passages given to the model{left}; * cited):"

    @property
    def one_line(self) -> str:
        """The heading and every group on one line (the app's rendering)."""
        return f"{self.heading} " + " · ".join(g.line for g in self.groups) if self.groups else ""

    @classmethod
    def of(cls, answer: Answer) -> "Sources":
        """The passages the model was given for `answer`, grouped for listing."""
        cited = {p.number for p in answer.citations}
        groups: list[Source] = []
        run: list[Passage] = []

        def close_run() -> None:
            if run:
                first, last = run[0].found, run[-1].found
                numbers = f"[{run[0].number}]" if len(run) == 1 else f"[{run[0].number}]-[{run[-1].number}]"
                groups.append(Source(numbers, first.location(last), False))
                run.clear()

        for p in answer.sources:
            if p.number not in cited and run and p.number == run[-1].number + 1 \
                    and p.found.source == run[-1].found.source and _follows(run[-1].found, p.found):
                run.append(p)
                continue
            close_run()
            if p.number in cited:
                groups.append(Source(f"[{p.number}]", p.label, True, p.text))
            else:
                run.append(p)
        close_run()
        return cls(len(answer.sources), answer.passages_total, tuple(groups))

    def as_meta(self) -> dict[str, Any]:
        return {"sources": [{"numbers": g.numbers, "label": g.label, "cited": g.cited} for g in self.groups],
                "passages_given": self.given, "passages_total": self.total}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Sources":
        """The sources of a stored reply (the cited text comes from its `citations`)."""
        texts = {f"[{c.get('number')}]": str(c.get("text") or "") for c in meta.get("citations") or []}
        groups = tuple(Source(str(g.get("numbers", "")), str(g.get("label", "")), bool(g.get("cited")),
                              texts.get(str(g.get("numbers", "")), "") if g.get("cited") else "")
                       for g in meta.get("sources") or [])
        return cls(int(meta.get("passages_given") or 0), int(meta.get("passages_total") or 0), groups)


def citations_meta(answer: Answer) -> list[dict[str, Any]]:
    """The passages an answer cites, as the store keeps them (export and the app read them)."""
    return [passage_meta(p) for p in answer.citations]


def passage_meta(p: Passage) -> dict[str, Any]:
    """A passage as the store keeps it; its first line, when it has lines, numbers the
    lines of its text where it is shown."""
    return {"number": p.number, "label": p.label, "text": p.text, "start_line": p.found.start_line}


def _follows(before, after) -> bool:
    """Whether passage `after` comes after `before` in its file (a run's range then holds
    both); numbers follow first appearance, which is not always reading order."""
    if before.start_page is not None:
        return after.start_page is not None and after.start_page >= before.end_page
    return before.end_line is not None and after.start_line is not None and after.start_line >= before.end_line
