"""SVG snapshots of the app at 100x32 and 80x24 (pytest-textual-snapshot; update with --snapshot-update)."""

from __future__ import annotations

import re

import pytest

from tests.fake_engine import FakeEngine
from assistant.store import Store
from assistant.tui.app import create_app
from assistant.tui.widgets.composer import Composer
from assistant.tui.widgets.messages import SummaryMessage
from tests.tui_helpers import AUDIT, NOTES, SIZE, SteadyEngine, SummaryEngine, steady, wait_for, wait_idle, write


class SteadySummaryEngine(SummaryEngine):
    """Its parts' timings fixed (20 tok/s): the status bar shows each part's speed."""

    def generate(self, prompt_ids, settings, *, stop=None, on_text=None, on_prefill=None):
        return steady(super().generate(prompt_ids, settings, stop=stop, on_text=on_text, on_prefill=on_prefill))


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("XGEN_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("assistant.tui.widgets.status.now", lambda: 0.0)  # live timers show 0 s
    with Store(tmp_path / "sessions.db") as store:
        yield store


async def settle(pilot) -> None:
    pilot.app.chat.query_one(Composer).cursor_blink = False
    pilot.app.clear_notifications()
    await pilot.pause()


def test_empty_app(snap_compare, store):
    app = create_app(engine_factory=lambda ref: FakeEngine(), store=store)

    async def run_before(pilot):
        await wait_idle(pilot, app)
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_conversation_with_a_cited_answer(snap_compare, store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    engine = SteadyEngine(["Widget 2 left the warehouse on **day 2** [1].\n\n- It was the second shipment [1]."])
    app = create_app(engine_factory=lambda ref: engine, store=store, files=[str(notes)])

    async def run_before(pilot):
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        composer = app.chat.query_one(Composer)
        composer.text = "When did widget 2 leave?"
        composer.focus()
        composer.move_cursor(composer.document.end)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.chat.query(".citation") and not app.chat.busy)
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_summarizing_in_progress(snap_compare, store, tmp_path):
    audit = write(tmp_path, "audit.txt", AUDIT)
    engine = SteadySummaryEngine(n_ctx=512, hold_from_part=3)  # part 3 waits until the app stops it
    app = create_app(engine_factory=lambda ref: engine, store=store, files=[str(audit)])

    async def run_before(pilot):
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: re.search(r"part 3 .*tokens read",  # the prompt read so far, from the engine
                                                str(app.chat.query_one(SummaryMessage).query_one(".stage").render())))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_conversation_at_80x24(snap_compare, store, tmp_path):
    """The smallest supported terminal: no sidebar (F2 shows it), the footer fits."""
    notes = write(tmp_path, "notes.md", NOTES)
    engine = SteadyEngine(["Widget 2 left the warehouse on **day 2** [1]."])
    app = create_app(engine_factory=lambda ref: engine, store=store, files=[str(notes)])

    async def run_before(pilot):
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        composer = app.chat.query_one(Composer)
        composer.text = "When did widget 2 leave?"
        composer.focus()
        composer.move_cursor(composer.document.end)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.chat.query(".citation") and not app.chat.busy)
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
