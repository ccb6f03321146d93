"""Summaries in the app: progress by part and inside a part."""

from __future__ import annotations

import re

import pytest

from assistant.tui.widgets.messages import SummaryMessage

from tests.tui_helpers import AUDIT, SIZE, SMALL, SummaryEngine, app_with, sync, wait_for, wait_idle, write


@sync
async def test_summarize_a_long_file_with_progress(store, tmp_path, monkeypatch):
    audit = write(tmp_path, "audit.txt", AUDIT)
    engine = SummaryEngine(n_ctx=512)
    progress: list[tuple[str, int, int]] = []
    original = SummaryMessage.set_progress
    monkeypatch.setattr(SummaryMessage, "set_progress",
                        lambda self, stage, done, total: (progress.append((stage, done, total)),
                                                          original(self, stage, done, total)))
    app = app_with(engine, store, files=[str(audit)])
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents, what="the file to load")
        await pilot.press("ctrl+s")
        summary = await wait_for(pilot, lambda: list(app.chat.query(SummaryMessage)))
        await wait_idle(pilot, app, timeout=20)
        summary = summary[0]
        assert summary.text == engine.final
        assert summary.title == "Summary of audit.txt"
        assert summary.meta["stats"]["parts"] >= 3
        assert not summary.query_one(".stage").display  # progress hidden once done
    parts = summary.meta["stats"]["parts"]
    assert ("map", 0, parts) in progress and ("map", parts - 1, parts) in progress and progress[-1][0] == "final"
    saved = [m for m in store.messages(app.conversation.session_id) if m.role == "summary"]
    assert saved[0].content == engine.final and saved[0].meta["file"] == "audit.txt"
    assert [s.text for s in store.summaries(app.conversation.session_id)] == [engine.final]


@sync
async def test_a_summary_shows_progress_inside_a_part(store, tmp_path):

    audit = write(tmp_path, "audit.txt", AUDIT)
    engine = SummaryEngine(n_ctx=512, hold_from_part=2)  # part 2 waits until it is stopped
    app = app_with(engine, store, files=[str(audit)])
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        await pilot.press("ctrl+s")
        summary = (await wait_for(pilot, lambda: list(app.chat.query(SummaryMessage))))[0]
        stage = summary.query_one(".stage")
        await wait_for(pilot, lambda: "part 2" in str(stage.render()), what="part 2")
        # The time inside the part ticks while the model reads it.
        await wait_for(pilot, lambda: re.search(r"· [1-9]\d* s", str(stage.render())), timeout=10,
                       what="a second in the part")
        # The engine's count of the part's prompt read so far (its first batch, then held).
        held = len(await wait_for(pilot, lambda: engine.held_prompt, what="part 2 held"))
        assert held > engine.prefill_batch
        await wait_for(pilot, lambda: f"{engine.prefill_batch} of {held:,} tokens read" in str(stage.render()),
                       what="the tokens read in part 2")
        assert str(stage.render()).startswith("Reading part 2 of ")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.busy, timeout=5)
        assert not stage.display
        # The details line says once that it stopped, and of how many parts.
        details = str(summary.query_one(".meta").render())
        parts = summary.meta["stats"]["parts"]
        assert details.startswith(f"stopped after 1 of {parts} parts; their summaries are cached")
        assert details.count("stopped") == 1 and details.count("parts") == 1


@pytest.mark.parametrize("reports_prefill", [True, False], ids=["local", "remote"])
@sync
async def test_the_status_bar_shows_the_context_of_the_summary_call_running(store, tmp_path, reports_prefill):
    """ctx is the running call's prompt over the window, from any engine: a remote server
    reports nothing while it reads, and the status bar used to show the conversation's 0."""
    audit = write(tmp_path, "audit.txt", AUDIT)
    engine = SummaryEngine(n_ctx=512, hold_from_part=2, reports_prefill=reports_prefill)
    app = app_with(engine, store, files=[str(audit)])
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        assert app.conversation.context_used == 0
        await pilot.press("ctrl+s")
        held = len(await wait_for(pilot, lambda: engine.held_prompt, what="part 2 held"))
        context = app.chat.query_one("#context")
        shown = f"ctx {held:,}/512 {held / 512:.0%}"
        await wait_for(pilot, lambda: str(context.render()) == shown, what=shown)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.busy, timeout=5)
        assert str(context.render()) == "ctx 0/512 0%"  # the summary's call is over


@sync
async def test_a_bullet_summary_says_it_is_bullets(store, tmp_path):
    notes = write(tmp_path, "notes.md", AUDIT[:400])
    engine = SummaryEngine(final="- Pallets were counted.\n- Cooling units were serviced.")
    app = app_with(engine, store, files=[str(notes)])
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        app.chat.action_summarize("bullets")  # Ctrl+P → Summarize as bullet points
        summary = (await wait_for(pilot, lambda: list(app.chat.query(SummaryMessage))))[0]
        await wait_idle(pilot, app)
        assert summary.title == "Bullet-point summary of notes.md"
        assert str(summary.query_one(".role").render()) == "Bullet-point summary of notes.md"


@sync
async def test_a_file_over_the_load_limit_is_summarized_in_parts_with_progress(store, tmp_path, monkeypatch):
    """The app attaches a text file over the load limit for summaries only; Ctrl+S reads it
    in parts, showing how much of the file is read."""
    monkeypatch.setattr("assistant.documents.large.DEFAULT_MAX_BYTES", 4096)  # stands in for 50 MB
    log = write(tmp_path, "huge.log", AUDIT)
    engine = SummaryEngine(n_ctx=512)
    stages: list[str] = []
    original = SummaryMessage.set_progress

    def recorded(self, stage, done, total):
        original(self, stage, done, total)
        stages.append(str(self.query_one(".stage").render()))

    monkeypatch.setattr(SummaryMessage, "set_progress", recorded)
    app = app_with(engine, store, files=[str(log)])
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.large_files and not app.chat.files.reading)
        await pilot.press("ctrl+s")
        summary = (await wait_for(pilot, lambda: list(app.chat.query(SummaryMessage))))[0]
        await wait_idle(pilot, app, timeout=30)
        assert summary.text == engine.final and summary.title == "Summary of huge.log"
        assert summary.meta["stats"]["parts"] >= 3
    # A file read in one window shows its parts; one of several windows, the bytes read.
    reads = [s for s in stages if s.startswith(("Reading the file", "Reading part"))]
    assert reads and any("part 3" in s or "MB of" in s for s in reads)
    saved = [m for m in store.messages(app.conversation.session_id) if m.role == "summary"]
    assert saved[0].content == engine.final and saved[0].meta["file"] == "huge.log"


@sync
async def test_a_summary_cut_by_the_server_going_away_says_how_many_parts_are_cached(store, tmp_path):
    from textual.widgets import ProgressBar

    from assistant.engines import open_engine
    from bench.openai_double import OpenAIDouble

    audit = write(tmp_path, "audit.txt", AUDIT)
    with OpenAIDouble(n_ctx=512, cut_after=2, cut_from=4) as server:  # the fourth part: gone after 2 words
        app = app_with(open_engine("remote", server.url), store, files=[str(audit)])
        async with app.run_test(size=SMALL) as pilot:
            await wait_idle(pilot, app)
            await wait_for(pilot, lambda: app.conversation.documents, what="the file to load")
            await pilot.press("ctrl+s")
            (summary,) = await wait_for(pilot, lambda: list(app.chat.query(SummaryMessage)))
            total = await wait_for(pilot, lambda: summary.query_one(ProgressBar).total, what="the parts")
            await wait_for(pilot, lambda: not app.chat.busy and not summary.streaming, timeout=20)
            meta = str(summary.query_one(".meta").render())
            text = summary.markdown.source
        assert len([r for r in server.requests if "prompt" in r]) == 4 and total > 4
    assert "the server closed the connection" in meta and f"3 of {int(total)} parts are cached" in meta
    assert "(no text)" not in text and text.count("**Part ") == 3  # the part summaries done, shown
    saved = [m for m in store.messages(app.conversation.session_id) if m.role == "summary"][0]
    assert saved.meta["finish"] == "error" and "3 of " in saved.meta["error"] and saved.content.count("**Part ") == 3
