"""The records the store returns: a session, its messages and attached files, a summary.

They live apart from :mod:`assistant.store.store` so that the Markdown export, which the
store calls, can read them without importing the store back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SHORT_ID = 8  # characters of a session id shown in lists


@dataclass(frozen=True)
class Session:
    id: str
    title: str
    model: str
    engine: str
    created_at: str
    updated_at: str
    message_count: int = 0
    model_ref: str = ""  # the model's file, folder or URL, to reopen the session with it

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID]


@dataclass(frozen=True)
class Message:
    id: int
    session_id: str
    role: str
    content: str
    created_at: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def citations(self) -> list[dict[str, Any]]:
        return list(self.meta.get("citations") or [])


@dataclass(frozen=True)
class AttachedFile:
    id: int
    session_id: str
    path: str
    name: str
    sha256: str
    n_tokens: int
    added_at: str
    kind: str = "file"  # or "folder" (asked about through the library index)

    @property
    def is_folder(self) -> bool:
        return self.kind == "folder"


@dataclass(frozen=True)
class Summary:
    id: int
    session_id: str | None
    source_path: str
    sha256: str
    form: str
    text: str
    created_at: str
