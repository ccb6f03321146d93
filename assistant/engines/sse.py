"""Reading an OpenAI-compatible completion stream (server-sent events), defensively.

Whatever a server sends is checked before use: a line longer than MAX_LINE_BYTES is
refused as soon as it passes the bound (never buffered whole), and every field the
client reads must have its documented type, or the event is refused with one line
naming the field. `ids` are kept only inside the model's vocabulary, since they become
part of later prompts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from models.errors import XGenError
from models.tokenizer import N_VOCAB

MAX_LINE_BYTES = 1 << 20  # one event of one token is well under 1 KiB
_LINE_END = re.compile(rb"\r\n|\r|\n")


class StreamError(XGenError):
    """A stream event or line the client refuses."""


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bounded_lines(chunks: Iterable[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[str]:
    """The lines of a byte stream (CR, LF or CRLF endings), decoded as UTF-8.

    Raises StreamError once a line passes `limit` bytes, holding at most about `limit`
    plus one chunk in memory."""
    pending = bytearray()
    scanned = 0  # pending[:scanned] holds no line end
    for chunk in chunks:
        pending += chunk
        while match := _LINE_END.search(pending, scanned):
            line = bytes(pending[:match.start()])
            del pending[:match.end()]
            scanned = 0
            yield line.decode("utf-8", errors="replace")
        scanned = len(pending)  # (a CRLF split between chunks reads as one more, empty, line: no event)
        if len(pending) > limit:
            raise StreamError(f"a stream line longer than {limit >> 20} MiB; refused")
    if pending:
        yield pending.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Choice:
    text: str
    ids: tuple[int, ...]
    finish_reason: str | None

    @property
    def is_token(self) -> bool:
        # A llama.cpp server sends an empty text for a token that ends inside a UTF-8
        # character; the event that only carries the finish reason is no token.
        return bool(self.text) or self.finish_reason is None


@dataclass(frozen=True)
class Event:
    """One parsed `data:` event."""

    choices: tuple[Choice, ...] = ()
    error: str | None = None  # the server reports a failure inside the stream
    generated: int | None = None  # usage.completion_tokens or timings.predicted_n
    prompt_evaluated: int | None = None  # timings.prompt_n
    cached: int | None = None  # usage.prompt_tokens_details.cached_tokens


def _bad(what: str, data: str) -> StreamError:
    return StreamError(f"a malformed stream event ({what}): {one_line(data, 80)!r}")


def _count(value: object, name: str, data: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{name} is not a count", data)
    return value


def _object(value: object, name: str, data: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"{name} is not an object", data)
    return value


def _ids(value: object, data: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t < N_VOCAB for t in value):
        raise _bad(f"tokens is not a list of token ids below {N_VOCAB}", data)
    return tuple(value)


def _choice(value: object, top_ids: object, data: str) -> Choice:
    if not isinstance(value, dict):
        raise _bad("a choice is not an object", data)
    text = value.get("text")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise _bad(f"text is {type(text).__name__}, not a string", data)
    reason = value.get("finish_reason")
    if reason is not None and not isinstance(reason, str):
        raise _bad("finish_reason is not a string", data)
    tokens = value.get("tokens")
    return Choice(text, _ids(tokens if tokens is not None else top_ids, data), reason)


def parse_event(data: str) -> Event:
    """One event's JSON; StreamError (one line) for anything malformed."""
    try:
        chunk = json.loads(data)
    except (ValueError, RecursionError):
        raise StreamError(f"an unreadable stream event: {one_line(data, 80)!r}") from None
    if not isinstance(chunk, dict):
        raise _bad("not a JSON object", data)
    error = chunk.get("error")
    if isinstance(error, (dict, str)):
        return Event(error=json.dumps(chunk))
    choices = chunk.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list):
        raise _bad("choices is not a list", data)
    usage = _object(chunk.get("usage"), "usage", data)
    timings = _object(chunk.get("timings"), "timings", data)
    details = _object(usage.get("prompt_tokens_details"), "usage.prompt_tokens_details", data)
    generated = _count(usage.get("completion_tokens"), "usage.completion_tokens", data)
    predicted = _count(timings.get("predicted_n"), "timings.predicted_n", data)
    return Event(choices=tuple(_choice(c, chunk.get("tokens"), data) for c in choices),
                 generated=generated or predicted,
                 prompt_evaluated=_count(timings.get("prompt_n"), "timings.prompt_n", data),
                 cached=_count(details.get("cached_tokens"), "usage.prompt_tokens_details.cached_tokens", data))
