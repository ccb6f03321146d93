"""Shared pieces of the TUI tests: documents, engines, and waiting for the app."""

from __future__ import annotations

import asyncio
import functools
import threading
from pathlib import Path

import pytest

from assistant.engines.fake import FakeEngine
from assistant.store import Store

SIZE = (100, 32)

NOTES = "".join(f"Line {i}: the shipment of widgets number {i} left the warehouse on day {i}.\n"
                + ("\n" if i % 5 == 0 else "") for i in range(1, 21))
AUDIT = "".join(f"Paragraph {n}: the auditors visited site {n} and counted {n} pallets of spare parts. "
                f"They noted that the cooling unit in hall {n} was serviced in spring.\n\n" for n in range(60))


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


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


class SummaryEngine(FakeEngine):
    """Answers part prompts with "Part summary N." and the final prompt with FINAL, and
    can hold a part until released (to show a summary in progress), midway through reading
    its prompt as a real engine would be: its first batch read and reported."""

    def __init__(self, final: str = "The auditors counted pallets at every site and serviced the cooling units.",
                 hold_from_part: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.final = final
        self.hold_from_part = hold_from_part
        self.held_prompt: list[int] = []
        self.calls = 0

    def generate(self, prompt_ids, settings, *, stop=None, on_text=None, on_prefill=None):
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


@pytest.fixture
def store(home):
    with Store(home / "sessions.db") as store:
        yield store


def app_with(engine, store, **kwargs):
    from assistant.tui.app import create_app

    return create_app(engine_factory=lambda ref: engine, store=store, **kwargs)


def replies(app) -> list:
    from assistant.tui.widgets.messages import ReplyMessage

    return list(app.chat.query(ReplyMessage))


def notifications(app) -> list:
    return list(app._notifications)
