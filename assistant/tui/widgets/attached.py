"""The files and folders of the open session on one line above the input, for when the
sidebar is hidden (below 90 columns, or F2): "Files: notes.md · cases/ +2 more"."""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget

from assistant.safetext import printable

LEAD = "Files: "


def files_line(names: list[str], width: int) -> str:
    """`names` in `width` columns: as many whole names as fit, then "+N more" (the first
    name is shortened rather than left out)."""
    if not names:
        return ""
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        more = f" +{rest} more" if rest else ""
        candidate = LEAD + " · ".join([*shown, name]) + more
        if len(candidate) <= width:
            shown.append(name)
            continue
        if not shown:  # not even the first: shorten it
            room = max(width - len(LEAD) - len(more) - 1, 1)
            shown.append(name[:room] + "…")
            return LEAD + shown[0] + more
        return LEAD + " · ".join(shown) + f" +{len(names) - len(shown)} more"
    return LEAD + " · ".join(shown)


class AttachedLine(Widget):
    DEFAULT_CSS = "AttachedLine { height: 1; }"

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.names: list[str] = []

    def show(self, names: list[str]) -> None:
        self.names = [printable(n) for n in names]
        self.set_class(bool(names), "-has-files")
        self.refresh()

    def render(self) -> Content:
        return Content(files_line(self.names, self.content_region.width or self.size.width))
