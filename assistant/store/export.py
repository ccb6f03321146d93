"""A session as Markdown, with the sources its answers cite.

Message `meta` is free-form JSON. Keys this module understands (in `export_markdown`):

- `citations`: a list of `{"number": 3, "label": "report.pdf:12-30", "text": "the
  quoted passage"}`. `number` is the passage number the answer cites as [3] (default:
  the position in the list); instead of `label`, `name` (or `path`) with optional
  `start_line`/`end_line` build one; `text` is optional.
- anything else (`stats`, `finish`, ...) is stored and returned as is.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from assistant.safetext import printable, shown_name
from assistant.store.records import AttachedFile, Message, Session


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _when(stamp: str) -> str:
    return parse_time(stamp).strftime("%Y-%m-%d %H:%M UTC")


def citation_label(citation: dict[str, Any]) -> str:
    """Its `label`, or `name:12-30` (`name:12`, or `name` without line numbers)."""
    if citation.get("label"):
        return str(citation["label"])
    name = str(citation.get("name") or Path(str(citation.get("path") or "?")).name)
    start, end = citation.get("start_line"), citation.get("end_line")
    if start is None:
        return name
    if end is None or end == start:
        return f"{name}:{start}"
    return f"{name}:{start}-{end}"


def render_markdown(session: Session, files: list[AttachedFile], messages: list[Message]) -> str:
    lines = [f"# {session.title or 'Untitled session'}", ""]
    model = session.model or "unknown model"
    if session.engine:
        model += f" ({session.engine})"
    lines += [f"- Session: `{session.id}`", f"- Model: {model}",
              f"- Created: {_when(session.created_at)}", f"- Updated: {_when(session.updated_at)}", ""]
    if files:
        lines += ["## Attached files", ""]
        for f in files:
            path = shown_name(f.path)
            lines.append(f"- {f.name}/ (`{path}`, a folder)" if f.is_folder else
                         f"- {f.name} (`{path}`, {f.n_tokens:,} tokens, sha256 `{f.sha256[:12]}`)")
        lines.append("")
    for message in messages:
        lines += [f"## {message.role.capitalize()}", "", message.content.strip(), ""]
        citations = message.citations
        if citations:
            lines += ["Sources:", ""]
            for position, citation in enumerate(citations, 1):
                lines += [f"[{citation.get('number') or position}] {citation_label(citation)}", ""]
                quote = str(citation.get("text") or "").strip()
                if quote:
                    lines += [f"> {line}".rstrip() for line in quote.splitlines()] + [""]
    # An export is read with `cat` and `less`: nothing in it may drive the terminal.
    return printable("\n".join(lines).rstrip("\n") + "\n")
