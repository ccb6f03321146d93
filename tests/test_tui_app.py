"""The terminal app's behaviour at the keyboard and on small terminals (issue 10), driven
with Textual's Pilot on a FakeEngine at 80x24 and 120x40."""

from __future__ import annotations

import re

import pytest
from textual.widgets import OptionList
from textual.widgets._footer import FooterKey

from assistant.engines.fake import FakeEngine
from assistant.tui.app import create_app
from assistant.tui.screens.attach import AttachScreen
from assistant.tui.widgets.composer import Composer
from assistant.tui.widgets.conversation import ConversationView
from assistant.tui.widgets.messages import ReplyMessage
from assistant.tui.widgets.sidebar import Sidebar
from tests.test_tui_support import (  # noqa: F401 (store is a fixture)
    NOTES, app_with, replies, store, sync, wait_for, wait_idle,
    write)

SMALL = (80, 24)
LARGE = (120, 40)
WORDS = " ".join(f"word{i}" for i in range(60))






def composer(app) -> Composer:
    return app.chat.query_one(Composer)


def notes_of(app) -> list[str]:
    return [n.message for n in app._notifications]


async def send(pilot, text: str) -> None:
    box = composer(pilot.app)
    box.focus()
    box.text = text
    box.move_cursor(box.document.end)
    await pilot.press("enter")


async def type_draft(pilot, text: str) -> None:
    box = composer(pilot.app)
    box.focus()
    box.text = text
    box.move_cursor(box.document.end)
    await pilot.pause()


# -- 1. focus and the draft come back after every dialog -----------------------------------


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


# -- 2. visible focus; a focused list selects its first row --------------------------------


@sync
async def test_focus_is_visible_and_a_focused_list_selects_its_first_row(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    app = app_with(FakeEngine(), store, files=[str(notes)])
    async with app.run_test(size=LARGE) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        await pilot.pause()
        view = app.chat.query_one(ConversationView)
        files = app.chat.query_one("#files", OptionList)
        assert files.highlighted is None
        unfocused = (view.styles.border_left[0], files.styles.border_left[0])
        view.focus()
        await pilot.pause()
        assert view.styles.border_left[0] != unfocused[0]  # a bar shows where the focus is
        files.focus()
        await pilot.pause()
        assert files.styles.border_left[0] != unfocused[1]
        assert files.highlighted == 0  # Enter now summarizes notes.md


# -- 3. PageUp/PageDown scroll the chat from the input -------------------------------------


@sync
async def test_page_keys_scroll_the_conversation_from_the_input(store):
    engine = FakeEngine(["\n\n".join(f"Paragraph {i}." for i in range(40))])
    app = app_with(engine, store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "A long answer please")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        await pilot.pause(0.2)
        view = app.chat.query_one(ConversationView)
        bottom = view.scroll_y
        assert bottom > 0 and app.focused is composer(app)
        await pilot.press("pageup")
        await pilot.pause(0.3)
        assert view.scroll_y < bottom
        await pilot.press("pagedown")
        await pilot.pause(0.3)
        assert view.scroll_y == bottom


# -- 4. a live status bar ------------------------------------------------------------------


@sync
async def test_the_status_bar_is_live_during_a_reply_and_resets_on_a_new_session(store):
    engine = FakeEngine([" ".join(f"word{i}" for i in range(300))], step_delay=0.03)  # about 9 s
    app = app_with(engine, store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        status = app.chat.status
        assert status.elapsed < 0 and status.speed == 0
        await send(pilot, "Count")
        await wait_for(pilot, lambda: app.chat.busy and status.elapsed >= 1 and status.speed > 0, timeout=8,
                       what="a second of live figures")
        assert app.chat.busy  # these are live figures, not the finished reply's
        assert status.context_used > 0
        shown = str(app.chat.query_one("#elapsed").render())  # whole seconds, ticking (a loaded machine lags)
        assert shown.endswith(" s") and int(shown[:-2]) >= 1
        assert "tok/s" in str(app.chat.query_one("#speed").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.busy, timeout=10)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.conversation.session_id is None)
        assert status.context_used == 0 and status.speed == 0 and status.elapsed < 0
        assert not app.chat.query_one("#elapsed").display


# -- 5. Clear keeps the files --------------------------------------------------------------


@sync
async def test_clear_keeps_the_files_in_the_sidebar(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    app = app_with(FakeEngine(["Answer."]), store, files=[str(notes)])
    async with app.run_test(size=LARGE) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        await send(pilot, "Question")
        await wait_idle(pilot, app)
        await app.chat.action_clear()
        await pilot.pause()
        files = app.chat.query_one("#files", OptionList)
        assert files.display and files.option_count == 1
        assert "notes.md" in str(files.get_option_at_index(0).prompt)


# -- 6. the sidebar on small terminals -----------------------------------------------------


@sync
async def test_the_sidebar_hides_below_90_columns_and_f2_toggles_it(store):
    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        sidebar = app.chat.query_one(Sidebar)
        assert not sidebar.display
        assert composer(app).region.width >= 70  # the conversation gets the whole width
        await pilot.press("f2")
        await pilot.pause()
        assert sidebar.display and sidebar.region.width == 22
        await pilot.press("f2")
        await pilot.pause()
        assert not sidebar.display


@sync
async def test_the_sidebar_is_narrower_below_120_columns(store):
    app = app_with(FakeEngine(), store)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_idle(pilot, app)
        assert app.chat.query_one(Sidebar).region.width == 22
    app = app_with(FakeEngine(), store)
    async with app.run_test(size=LARGE) as pilot:
        await wait_idle(pilot, app)
        sidebar = app.chat.query_one(Sidebar)
        assert sidebar.region.width == 26
        await pilot.press("f2")  # F2 hides it on a wide terminal too
        await pilot.pause()
        assert not sidebar.display


# -- 16. the footer ------------------------------------------------------------------------


@sync
async def test_the_footer_shows_quit_and_the_sidebar_key_at_80_columns(store):
    app = app_with(FakeEngine([WORDS], step_delay=0.02), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)

        def shown() -> dict[str, str]:
            return {k.key: k.description for k in app.chat.query(FooterKey)
                    if k.region.width and k.region.right <= SMALL[0]}

        assert shown().get("ctrl+q") == "Quit" and shown().get("f2") == "Sidebar"
        await send(pilot, "Write")
        await wait_for(pilot, lambda: app.chat.busy)
        await pilot.pause()
        keys = shown()  # Esc Stop joins them and everything still fits
        assert "escape" in keys and "ctrl+q" in keys and "f2" in keys
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.busy)


# -- 17. Ctrl+C ------------------------------------------------------------------------------


@sync
async def test_ctrl_c_stops_a_reply_and_idle_it_does_not_quit(store):
    engine = FakeEngine([WORDS], step_delay=0.03)
    app = app_with(engine, store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Say many words")
        reply = (await wait_for(pilot, lambda: replies(app)))[0]
        await wait_for(pilot, lambda: len(reply.streamed_text) > 10, what="some streamed text")
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: not app.chat.busy, timeout=3, what="the reply to stop")
        assert reply.meta["finish"] == "stopped" and WORDS.startswith(reply.text) and reply.text != WORDS
        # Idle, Ctrl+C keeps Textual's meaning (copy in the input): the app stays open.
        await type_draft(pilot, "keep me")
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.is_running and composer(app).text == "keep me"


# -- 9. screenshots --------------------------------------------------------------------------


@sync
async def test_the_palette_screenshot_is_saved_in_the_data_folder_without_downloads(store, home, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))  # a home without ~/Downloads
    monkeypatch.delenv("XDG_DOWNLOAD_DIR", raising=False)
    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.press(*"screenshot")
        await pilot.pause(0.3)
        await pilot.press("enter")
        note = await wait_for(pilot, lambda: [n for n in app._notifications if "Screenshot" in (n.title or "")],
                              what="the screenshot notification")
        assert note[-1].severity == "information", note[-1].message
    saved = list((home / "screenshots").glob("*.svg"))
    assert len(saved) == 1 and str(saved[0]) in note[-1].message and saved[0].read_text().startswith("<svg")


# -- 13. attaching a file twice --------------------------------------------------------------


@sync
async def test_attaching_a_file_twice_says_so_and_attaches_it_once(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    app = app_with(FakeEngine(), store, files=[str(notes)])
    async with app.run_test(size=LARGE) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        app.clear_notifications()
        app.chat.attach_paths([str(notes)])
        await pilot.pause()
        (note,) = list(app._notifications)
        assert note.severity == "warning" and "notes.md is already attached" in note.message
        # Two reads of the same new file in flight: one is attached, the other is reported.
        other = write(tmp_path, "other.md", NOTES.replace("widgets", "gadgets"))
        app.clear_notifications()
        app.chat.attach_paths([str(other), str(other)])
        await wait_for(pilot, lambda: len(app.conversation.documents) == 2 and not app.chat._reading_files)
        await pilot.pause()
        assert any("other.md is already attached" in m for m in notes_of(app))
        assert sum("other.md" in m and "tokens" in m for m in notes_of(app)) == 1
        assert [d.name for d in app.conversation.documents] == ["notes.md", "other.md"]
        assert app.chat.query_one("#files", OptionList).option_count == 2
    assert [f.name for f in store.files(app.conversation.session_id)] == ["notes.md", "other.md"]


# -- 15. progress inside a summary's part ------------------------------------------------------


@sync
async def test_a_summary_shows_progress_inside_a_part(store, tmp_path):
    from assistant.tui.widgets.messages import SummaryMessage
    from tests.test_tui_support import AUDIT, SummaryEngine

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
        assert app.chat.status.context_used == engine.prefill_batch  # that call's context so far
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.busy, timeout=5)
        assert not stage.display


# -- 11. Up and Down recall the session's questions ------------------------------------------


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


# -- 12. the attach dialog: errors inline, candidates listed -----------------------------------


@sync
async def test_the_attach_dialog_stays_open_on_an_error_and_lists_the_candidates(store, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    write(folder, "notes.md", NOTES)
    write(folder, "notes-old.md", NOTES)
    write(folder, "report.txt", NOTES)
    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("ctrl+o")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, AttachScreen) and app.screen)
        path = dialog.query_one("#attach-path")
        error = dialog.query_one("#path-error")
        candidates = dialog.query_one("#path-candidates", OptionList)

        async def submit(text: str) -> None:
            path.value = text
            path.cursor_position = len(text)
            await pilot.pause()
            await pilot.press("enter")
            await pilot.pause()

        await submit(str(folder / "missing.md"))
        assert app.screen is dialog and error.display and "No such file" in str(error.render())
        await submit(str(folder))
        assert app.screen is dialog and "docs is a folder" in str(error.render())
        assert path.value == f"{folder}/"  # ... and its files are listed, to pick one
        await pilot.pause()
        assert candidates.display and candidates.option_count == 3
        # Typing narrows the list; Tab takes the first candidate.
        path.value = f"{folder}/no"
        path.cursor_position = len(path.value)
        await pilot.pause(0.2)
        assert not error.display
        assert [str(candidates.get_option_at_index(i).prompt) for i in range(candidates.option_count)] == [
            "notes-old.md", "notes.md"]
        await pilot.press("tab")
        assert path.value == f"{folder}/notes-old.md"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.conversation.documents, what="the file to load")
        assert app.screen is app.chat and app.conversation.documents[0].name == "notes-old.md"


# -- 10. Switch model can browse to any .gguf file ----------------------------------------------


@sync
async def test_switch_model_can_browse_to_a_gguf_file(store, tmp_path, monkeypatch):
    asked = []

    def factory(ref):
        asked.append(ref)
        return FakeEngine(model_name=ref or "default")

    model = tmp_path / "models" / "mine-q4.gguf"
    model.parent.mkdir()
    model.write_bytes(b"GGUF")
    write(model.parent, "readme.txt", "not a model")
    monkeypatch.setattr("assistant.tui.app.local_models", lambda: [])
    app = create_app(engine_factory=factory, store=store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        app.action_switch_model()
        picker = await wait_for(pilot, lambda: app.screen is not app.chat and app.screen.query(OptionList)
                                and app.screen)
        assert "Browse for a .gguf file" in str(picker.query_one(OptionList).get_option_at_index(0).prompt)
        await pilot.press("enter")
        dialog = await wait_for(pilot, lambda: type(app.screen).__name__ == "ModelFileScreen" and app.screen)
        path = dialog.query_one("#attach-path")
        path.value = f"{model.parent}/"
        path.cursor_position = len(path.value)
        await pilot.pause(0.2)
        candidates = dialog.query_one("#path-candidates", OptionList)
        assert [str(candidates.get_option_at_index(i).prompt) for i in range(candidates.option_count)] == [
            "mine-q4.gguf"]  # only .gguf files (and folders)
        path.value = str(model.parent / "readme.txt")
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog and "not a .gguf file" in str(dialog.query_one("#path-error").render())
        path.value = str(model)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.loaded and app.loaded.name == str(model))
        assert asked == [None, str(model)] and app.focused is composer(app)


# -- 14. rename and delete sessions, detach files from the palette --------------------------------


async def palette(pilot, command: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.press(*command)
    await pilot.pause(0.4)
    await pilot.press("enter")
    await pilot.pause()


@sync
async def test_the_palette_renames_and_deletes_sessions_with_confirmation(store):
    from assistant.tui.screens.dialogs import ConfirmScreen, TextScreen

    app = app_with(FakeEngine(["One."]), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "First question")
        await wait_idle(pilot, app)
        session_id = app.conversation.session_id
        titles = {c.title for c in app.get_system_commands(app.chat)}
        assert {"Rename session", "Delete session", "Detach file"} <= titles

        await palette(pilot, "rename session")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, TextScreen) and app.screen)
        dialog.query_one("#text-value").value = "Widgets audit"
        await pilot.press("enter")
        await wait_for(pilot, lambda: store.get_session(session_id).title == "Widgets audit")
        assert "Widgets audit" in str(app.chat.query_one("#sessions", OptionList).get_option_at_index(0).prompt)

        await palette(pilot, "delete session")
        await wait_for(pilot, lambda: app.screen is not app.chat and app.screen.query(OptionList))
        await pilot.press("enter")  # the current session is highlighted
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("enter")  # the focus is on Cancel: nothing is deleted
        await wait_for(pilot, lambda: app.screen is app.chat)
        assert store.get_session(session_id) and app.conversation.session_id == session_id

        await palette(pilot, "delete session")
        await wait_for(pilot, lambda: app.screen is not app.chat and app.screen.query(OptionList))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.conversation.session_id is None, what="a new session")
        assert store.list_sessions() == [] and not replies(app)
        assert any("Widgets audit" in m for m in notes_of(app))


@sync
async def test_the_palette_detaches_a_file(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    other = write(tmp_path, "other.md", NOTES.replace("widgets", "gadgets"))
    app = app_with(FakeEngine(), store, files=[str(notes), str(other)])
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: len(app.conversation.documents) == 2)
        await palette(pilot, "detach file")
        picker = await wait_for(pilot, lambda: app.screen is not app.chat and app.screen.query(OptionList)
                                and app.screen)
        assert picker.query_one(OptionList).option_count == 2
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: len(app.conversation.documents) == 1)
        assert [d.name for d in app.conversation.documents] == ["notes.md"]
        assert [f.name for f in store.files(app.conversation.session_id)] == ["notes.md"]
        await pilot.pause()
        assert app.chat.query_one("#files", OptionList).option_count == 1
        assert other.exists()  # only the session forgets it


# -- 7. a streamed line drawn twice --------------------------------------------------------------


@pytest.mark.parametrize("separator", ["\x0c", "\u2028", "\x85"])
@sync
async def test_a_streamed_reply_draws_each_line_once(separator):
    """A form feed (PDF text), U+2028 (web pages) or NEL (Latin-1) in a reply made Textual's
    Markdown.append re-parse from a line too early while streaming, which drew the last line
    of the paragraph before again."""
    from textual.app import App
    from textual.containers import VerticalScroll
    from textual.widgets._markdown import MarkdownBlock

    class Host(App):
        def compose(self):
            yield VerticalScroll()

    text = (f"Page 1{separator}page 2{separator}page 3 ends here.\nThe last line of it.\n\n"
            "Next paragraph.\n\nThird one.")
    app = Host()
    async with app.run_test(size=SMALL) as pilot:
        reply = ReplyMessage(1, streaming=True)
        await app.query_one(VerticalScroll).mount(reply)
        for start in range(0, len(text), 7):  # pieces as the relay sends them
            await reply.append(text[start:start + 7])
            await pilot.pause(0.02)
        await pilot.pause(0.2)
        shown = [str(block.render()) for block in reply.markdown.children if isinstance(block, MarkdownBlock)]
        assert shown == ["Page 1 page 2 page 3 ends here. The last line of it.", "Next paragraph.", "Third one."]
        await reply.finish(text, {})
        await pilot.pause()
        assert reply.text == text  # what is saved and exported is the model's text


# -- 8. no \' in exports -------------------------------------------------------------------------


@sync
async def test_the_export_has_plain_apostrophes_where_the_model_escaped_them(store, tmp_path):
    """XGen writes it\\'s; on screen Markdown hides the backslash, the export showed it."""
    from assistant.tui.screens.export import ExportScreen

    engine = FakeEngine(["It\\'s the unit\\'s fault, he said \\\"twice\\\". Code stays: `'it\\'s'`."])
    app = app_with(engine, store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Whose fault is it?")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        assert replies(app)[0].text == "It's the unit's fault, he said \"twice\". Code stays: `'it\\'s'`."
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        target = tmp_path / "chat.md"
        app.screen.query_one("#export-path").value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, target.exists)
    text = target.read_text()
    assert "It's the unit's fault, he said \"twice\"." in text and "`'it\\'s'`" in text
    assert store.messages(app.conversation.session_id)[1].content.startswith("It's the unit's")


def test_clean_reply_leaves_code_alone():
    from assistant.replytext import clean_reply

    text = "It\\'s here:\n\n```python\ns = 'it\\'s'\n```\n\nand `x = 'a\\'b'`, isn\\'t it?"
    assert clean_reply(text) == "It's here:\n\n```python\ns = 'it\\'s'\n```\n\nand `x = 'a\\'b'`, isn't it?"
    assert clean_reply("a \\\\ b \\n") == "a \\\\ b \\n"  # other backslashes stay
