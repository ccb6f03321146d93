"""The input: Enter sends, Ctrl+J a new line, Up/Down recall, a message typed early is kept and sent, the draft survives dialogs."""

from __future__ import annotations

from tests.fake_engine import FakeEngine
from assistant.tui.app import create_app
from assistant.tui.screens.attach import AttachScreen
from assistant.tui.widgets.composer import Composer
from assistant.tui.widgets.conversation import ConversationView

from tests.tui_helpers import (SIZE, SMALL, app_with, composer, palette, replies, send, sync, type_draft, wait_for,
                               wait_idle)


@sync
async def test_ctrl_j_adds_a_line_and_enter_sends_both(store):
    engine = FakeEngine()
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await pilot.click(Composer)
        await pilot.press(*"first", "ctrl+j", *"second")
        assert composer(app).text == "first\nsecond"
        await pilot.press("enter")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
    assert "first\nsecond" in engine.prompt_texts()[0]


@sync
async def test_up_and_down_recall_earlier_questions_like_a_shell(store):
    app = app_with(FakeEngine(["One.", "Two."]), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        for question in ("first question", "second\non two lines"):
            await send(pilot, question)
            await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        box = composer(app)
        await type_draft(pilot, "a draft")
        await pilot.press("up")
        assert box.text == "second\non two lines"
        await pilot.press("up")  # the cursor is on the last line: Up moves within the question first
        assert box.text == "second\non two lines" and box.cursor_location[0] == 0
        await pilot.press("up", "up")
        assert box.text == "first question"  # the oldest stays
        await pilot.press("down")
        assert box.text == "second\non two lines"
        await pilot.press("down", "down")
        assert box.text == "a draft"  # past the newest, the draft is back
        await pilot.press("down")
        assert box.text == "a draft"
    # A reopened session recalls its own questions.
    again = app_with(FakeEngine(), store)
    async with again.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, again)
        await wait_for(pilot, lambda: again.conversation.session_id)
        composer(again).focus()
        await pilot.press("up")
        assert composer(again).text == "second\non two lines"
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: again.conversation.session_id is None)
        composer(again).text = ""
        await pilot.press("up")
        assert composer(again).text == ""  # a new session has no questions yet


@sync
async def test_a_message_typed_while_the_model_loads_is_sent_when_it_is_ready(store):
    import threading

    engine = FakeEngine(["Ready now."])
    release = threading.Event()

    def slow(ref):
        release.wait(10)
        return engine

    app = create_app(engine_factory=slow, store=store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.model_loading)
        await send(pilot, "Early question")
        assert app.loaded is None and not replies(app)
        assert composer(app).text == "Early question"  # kept until it is sent
        release.set()
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        assert replies(app)[0].text == "Ready now." and composer(app).text == ""


@sync
async def test_focus_and_the_draft_return_to_the_input_after_dialogs(store, monkeypatch):
    monkeypatch.setattr("assistant.tui.app.local_models", lambda: [("/models/other.gguf", "other.gguf (1 GiB)")])
    app = create_app(engine_factory=lambda ref: FakeEngine(model_name=ref or "default"), store=store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await type_draft(pilot, "half a question")
        # The conversation had the focus; after the dialog the input has it.
        app.chat.query_one(ConversationView).focus()
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, AttachScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.chat)
        await pilot.pause()
        assert app.focused is composer(app) and composer(app).text == "half a question"
        # Switch model from the palette: the draft and the focus stay.
        await pilot.press("ctrl+p")
        await pilot.press(*"switch model")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not app.chat and "Picker" in type(app.screen).__name__)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.loaded and app.loaded.name == "/models/other.gguf")
        await pilot.pause()
        assert app.focused is composer(app) and composer(app).text == "half a question"


@sync
async def test_after_a_citation_and_a_dialog_typing_goes_to_the_input(store, tmp_path):
    """The focus on a citation, Ctrl+O then Esc (or a passage closed): the input has the
    focus, so the question typed lands there and Enter does not reopen the passage; keys
    typed on a list or a citation go to the input too, and F2 hiding the focused sidebar
    gives the focus to the input."""
    from assistant.tui.screens.passage import PassageScreen
    from assistant.tui.widgets.messages import CitationButton
    from textual.widgets import OptionList

    from tests.tui_helpers import NOTES, write

    notes = write(tmp_path, "notes.md", NOTES)
    engine = FakeEngine(["Widget 2 left on day 2 [1].", "Another answer."])
    app = app_with(engine, store, files=[str(notes)])
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        await send(pilot, "When did widget 2 leave?")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        await pilot.pause()
        citation = app.chat.query_one(CitationButton)
        citation.focus()
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, AttachScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.chat)
        await pilot.pause()
        await pilot.press(*"why")
        assert app.focused is composer(app) and composer(app).text == "why"

        # A passage opened and closed: Enter sends the question typed, no passage again.
        composer(app).text = ""
        citation.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.chat)
        await pilot.pause()
        await pilot.press(*"and then", "enter")
        await wait_for(pilot, lambda: len(replies(app)) == 2 and not app.chat.busy)
        assert app.screen is app.chat and engine.prompt_texts()[-1].count("and then")

        # Printable keys typed on a citation or a list land in the input.
        app.chat.query_one(CitationButton).focus()
        await pilot.press("o", "k")
        assert app.focused is composer(app) and composer(app).text == "ok"
        await pilot.press("f2")  # at 80 columns F2 shows the sidebar
        sessions = app.chat.query_one("#sessions", OptionList)
        await wait_for(pilot, lambda: sessions.display and sessions.region.width)
        sessions.focus()
        await pilot.press("!")
        assert app.focused is composer(app) and composer(app).text == "ok!"
        sessions.focus()
        await pilot.press("f2")
        await pilot.pause()
        assert app.focused is composer(app)
