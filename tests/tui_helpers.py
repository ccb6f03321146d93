"""Shared pieces of the app's tests (tests/test_tui_*.py): documents, engines, building
the app, typing into it and waiting for it. The `store` fixture is in conftest.py."""

from __future__ import annotations

import asyncio
import functools
import threading
from pathlib import Path

from tests.fake_engine import FakeEngine

SIZE = (100, 32)
SMALL = (80, 24)
LARGE = (120, 40)

NOTES = "".join(f"Line {i}: the shipment of widgets number {i} left the warehouse on day {i}.\n"
                + ("\n" if i % 5 == 0 else "") for i in range(1, 21))
AUDIT = "".join(f"Paragraph {n}: the auditors visited site {n} and counted {n} pallets of spare parts. "
                f"They noted that the cooling unit in hall {n} was serviced in spring.\n\n" for n in range(60))
LONG_REPLY = " ".join(f"word{i}" for i in range(200))


def sync(test):
    """Run an async test with asyncio.run (no pytest-asyncio needed)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


async def wait_for(pilot, condition, timeout: float = 10.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def wait_idle(pilot, app, timeout: float = 10.0):
    await wait_for(pilot, lambda: not app.chat.busy and app.loaded is not None, timeout, "the app to be idle")
    await pilot.pause()


async def wait_files(pilot, app, count: int = 1, timeout: float = 10.0):
    """Until `count` documents are attached and no read is in flight."""
    await wait_for(pilot, lambda: len(app.conversation.documents) >= count and not app.chat.files.reading,
                   timeout, "the files to load")
    await pilot.pause()


async def clear(pilot, app, timeout: float = 30.0):
    """Clear (Ctrl+P → Clear) and wait for the new session it starts."""
    old = app.conversation.session_id
    app.chat.action_clear()
    await wait_for(pilot, lambda: app.conversation.session_id not in (None, old), timeout, "the cleared session")
    await pilot.pause()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def app_with(engine, store, **kwargs):
    """The app on `engine` (the factory returns it whatever model is asked for)."""
    from assistant.tui.app import create_app

    return create_app(engine_factory=lambda ref: engine, store=store, **kwargs)


def composer(app):
    from assistant.tui.widgets.composer import Composer

    return app.chat.query_one(Composer)


async def type_draft(pilot, text: str) -> None:
    """Put `text` in the input (set at once: pressing each key is slow), cursor at its end."""
    box = composer(pilot.app)
    box.focus()
    box.text = text
    box.move_cursor(box.document.end)
    await pilot.pause()


async def send(pilot, text: str) -> None:
    await type_draft(pilot, text)
    await pilot.press("enter")


async def palette(pilot, command: str) -> None:
    """Run a command of the palette (Ctrl+P) by typing its name."""
    await pilot.press("ctrl+p")
    await pilot.press(*command)
    await pilot.pause(0.4)
    await pilot.press("enter")
    await pilot.pause()


def passage_rows(screen) -> list[tuple[str, str]]:
    """A passage dialog's paragraphs as shown: (the lines in the file, the text)."""
    rows = []
    for row in screen.query(".passage-row"):
        lines = row.query(".passage-lines")
        rows.append((str(lines.first().render()) if lines else "", str(row.query_one(".passage-paragraph").render())))
    return rows


def passage_text(screen) -> str:
    return "\n\n".join(text for _, text in passage_rows(screen))


def replies(app) -> list:
    from assistant.tui.widgets.messages import ReplyMessage

    return list(app.chat.query(ReplyMessage))


def notifications(app) -> list:
    # Textual has no public list of the toasts shown; tests read its collection.
    return list(app._notifications)


def toast_texts(app) -> list[str]:
    return [n.message for n in notifications(app)]


class SummaryEngine(FakeEngine):
    """Answers part prompts with "Part summary N." and the final prompt with FINAL, and
    can hold a part until released (to show a summary in progress), midway through reading
    its prompt as a real engine would be: its first batch read and reported."""

    def __init__(self, final: str = "The auditors counted pallets at every site and serviced the cooling units.",
                 hold_from_part: int | None = None, reports_prefill: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.final = final
        self.hold_from_part = hold_from_part
        self.reports_prefill = reports_prefill  # False: as a remote server, which says nothing until it writes
        self.held_prompt: list[int] = []
        self.calls = 0

    def generate(self, prompt_ids, settings, *, stop=None, on_text=None, on_prefill=None):
        on_prefill = on_prefill if self.reports_prefill else None
        prompt = self.detokenize(prompt_ids)
        part = "Summarize this part" in prompt or "into one paragraph" in prompt
        final = "Summarize the document" in prompt or "Combine them" in prompt and not part
        if part:
            self.calls += 1
            if self.hold_from_part is not None and self.calls >= self.hold_from_part:
                self.held_prompt = list(prompt_ids)
                if on_prefill is not None:
                    on_prefill(min(self.prefill_batch, len(prompt_ids)), len(prompt_ids))
                (stop or threading.Event()).wait()  # until the app stops it
            self.replies.appendleft(f"Part summary {self.calls}.")
        elif final:
            self.replies.appendleft(self.final)
        return super().generate(prompt_ids, settings, stop=stop, on_text=on_text, on_prefill=on_prefill)


def steady(done):
    """A completion whose timings are fixed (20 tok/s), for snapshots."""
    done.stats.seconds_to_first_token = 0.1
    done.stats.seconds = 0.1 + 0.05 * max(done.stats.generated - 1, 0)
    return done


class SteadyEngine(FakeEngine):
    def generate(self, prompt_ids, settings, *, stop=None, on_text=None, on_prefill=None):
        return steady(super().generate(prompt_ids, settings, stop=stop, on_text=on_text, on_prefill=on_prefill))
