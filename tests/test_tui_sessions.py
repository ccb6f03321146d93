"""Sessions: reopening, Clear, rename and delete."""

from __future__ import annotations

from textual.widgets import OptionList

from tests.fake_engine import FakeEngine
from assistant.tui.app import create_app
from assistant.tui.widgets.messages import CitationButton, UserMessage

from tests.tui_helpers import (LARGE, NOTES, SIZE, SMALL, app_with, clear, notifications, palette, replies, send,
                               sync, toast_texts, wait_files, wait_for, wait_idle, write)


@sync
async def test_a_second_app_shows_the_previous_conversation(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    first = app_with(FakeEngine(["First answer [1]."]), store, files=[str(notes)])
    async with first.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, first)
        await wait_for(pilot, lambda: first.conversation.documents)
        await send(pilot, "First question")
        await wait_idle(pilot, first)
    second = app_with(FakeEngine(), store)
    async with second.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, second)
        await wait_for(pilot, lambda: second.conversation.documents, what="the session's files")
        assert second.conversation.session_id == first.conversation.session_id
        assert [w.text for w in second.chat.query(UserMessage)] == ["First question"]
        (reply,) = replies(second)
        assert reply.text == "First answer [1]." and len(second.chat.query(CitationButton)) == 1
        sessions = second.chat.query_one("#sessions")
        assert "First question" in str(sessions.get_option_at_index(0).prompt)
        assert second.conversation.documents[0].name == "notes.md"
        # A new session, then back to the old one from the palette's picker.
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: second.conversation.session_id is None)
        assert not second.chat.query(UserMessage)
        second.chat.action_switch_session()
        await wait_for(pilot, lambda: second.screen is not second.chat)
        await pilot.press("enter")
        await wait_for(pilot, lambda: second.conversation.session_id == first.conversation.session_id)


@sync
async def test_a_reopened_session_whose_file_is_gone_says_so(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    first = app_with(FakeEngine(), store, files=[str(notes)])
    async with first.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, first)
        await wait_for(pilot, lambda: first.conversation.documents)
    notes.unlink()
    second = app_with(FakeEngine(), store)
    async with second.run_test(size=SIZE) as pilot:
        note = await wait_for(pilot, lambda: notifications(second) and notifications(second)[-1])
        assert note.severity == "warning" and "No such file" in note.message and "Ctrl+O" in note.message
        assert second.conversation.documents == []


@sync
async def test_a_reopened_session_remembers_its_turns_and_its_model(store, tmp_path):
    from assistant.modelref import LoadedModel

    notes = write(tmp_path, "notes.md", NOTES)
    model_file = write(tmp_path, "chosen.gguf", "stands in for a model file")
    asked: list = []

    def factory(engine):
        def load(ref):
            asked.append(ref)
            return LoadedModel("chosen", engine, location=str(model_file))
        return load

    first = create_app(engine_factory=factory(FakeEngine(["Widget 2 left on day 2 [1]."])), store=store,
                       files=[str(notes)], model=str(model_file))
    async with first.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, first)
        await wait_for(pilot, lambda: first.conversation.documents)
        await send(pilot, "When did widget 2 leave?")
        await wait_idle(pilot, first)
    engine = FakeEngine(["On day 3 [1]."])
    second = create_app(engine_factory=factory(engine), store=store)  # no --model: the session's
    async with second.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, second)
        await wait_for(pilot, lambda: second.conversation.documents, what="the session's files")
        await send(pilot, "And widget 3?")
        await wait_for(pilot, lambda: len(replies(second)) == 2 and not second.chat.busy)
    assert asked == [str(model_file), str(model_file)]
    prompt = engine.prompt_texts()[-1]
    assert prompt.index("Question: When did widget 2 leave?") < prompt.index("Widget 2 left on day 2 [1].") \
        < prompt.index("Question: And widget 3?")
    assert "Line 3: the shipment" in prompt


@sync
async def test_a_session_started_with_files_records_its_model_before_any_question(store, tmp_path):
    """`xgen chat FILE --model X`, quit without asking: `xgen` alone reopens it with X."""
    import threading

    from assistant.modelref import LoadedModel

    notes = write(tmp_path, "notes.md", NOTES)
    model_file = write(tmp_path, "chosen.gguf", "stands in for a model file")
    files_first = threading.Event()
    asked: list = []

    def load(ref):
        asked.append(ref)
        files_first.wait(10)  # the files are attached (and the session created) while the model loads
        return LoadedModel("chosen", FakeEngine(), location=str(model_file))

    first = create_app(engine_factory=load, store=store, files=[str(notes)], model=str(model_file))
    async with first.run_test(size=SMALL) as pilot:
        await wait_files(pilot, first)
        assert store.get_session(first.conversation.session_id).model_ref == ""
        files_first.set()
        await wait_idle(pilot, first)
        session_id = first.conversation.session_id
    saved = store.get_session(session_id)
    assert (saved.model, saved.model_ref) == ("chosen", str(model_file))
    assert "chosen" in store.export_markdown(session_id) and "unknown model" not in store.export_markdown(session_id)
    second = create_app(engine_factory=load, store=store)  # `xgen` alone
    async with second.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, second)
        assert second.conversation.session_id == session_id
    assert asked == [str(model_file), str(model_file)]


@sync
async def test_clear_starts_afresh_with_the_same_files_in_the_sidebar(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    app = app_with(FakeEngine(["Answer."]), store, files=[str(notes)])
    async with app.run_test(size=LARGE) as pilot:
        await wait_idle(pilot, app)
        await wait_files(pilot, app)
        await send(pilot, "Question")
        await wait_idle(pilot, app)
        old = app.conversation.session_id
        assert app.chat.status.context_used > 0
        await clear(pilot, app)
        assert [d.name for d in app.conversation.documents] == ["notes.md"]
        assert not app.chat.query(UserMessage) and app.chat.status.context_used == 0
        files = app.chat.query_one("#files", OptionList)
        assert files.display and files.option_count == 1
        assert "notes.md" in str(files.get_option_at_index(0).prompt)
    assert len(store.messages(old)) == 2  # the old conversation is kept


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
        assert any("Widgets audit" in m for m in toast_texts(app))


@sync
async def test_a_session_open_in_another_app_is_not_written_into_unwarned(store, tmp_path):
    from assistant.session import Conversation
    from assistant.store import SessionClaims, Store
    from assistant.tui.flows.sessions import ELSEWHERE, ELSEWHERE_AT_START

    earlier = store.create_session("Earlier question")
    store.add_message(earlier.id, "user", "Earlier question")
    with Store(store.path) as theirs:
        other_app = Conversation(theirs, claims=SessionClaims(store.path))  # another window, same data folder
        other_app.open(earlier.id)
        app = app_with(FakeEngine(), store)  # `xgen` alone: would reopen the most recent session
        async with app.run_test(size=SMALL) as pilot:
            await wait_idle(pilot, app)
            assert app.conversation.session_id is None and ELSEWHERE_AT_START in toast_texts(app)
            app.chat.sessions.open(earlier.id)  # asked for by name: opened, with a warning
            await wait_for(pilot, lambda: ELSEWHERE in toast_texts(app))
            assert app.conversation.session_id == earlier.id
        other_app.close()
    again = app_with(FakeEngine(), store)  # the other window closed: reopened as usual
    async with again.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, again)
        assert again.conversation.session_id == earlier.id
        assert not [t for t in toast_texts(again) if "another xgen window" in t]


@sync
async def test_a_session_deleted_elsewhere_leaves_the_sidebar_and_the_next_question_starts_anew(store, tmp_path):
    from assistant.store import Store
    from assistant.tui.widgets.sidebar import Sidebar

    notes = write(tmp_path, "notes.md", NOTES)
    app = app_with(FakeEngine(["First.", "Second."]), store, files=[str(notes)])
    async with app.run_test(size=LARGE) as pilot:  # the sidebar shows at 120 columns
        await wait_idle(pilot, app)
        await wait_files(pilot, app)
        await send(pilot, "First question?")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        deleted = app.conversation.session_id
        sessions = app.chat.query_one(Sidebar).query_one("#sessions", OptionList)
        assert sessions.option_count == 1
        with Store(store.path) as theirs:
            theirs.delete_session(deleted)  # another window, or `xgen sessions delete`
        await wait_for(pilot, lambda: "deleted in another window" in " ".join(toast_texts(app)),
                       what="the deletion noticed")
        await wait_for(pilot, lambda: deleted not in [sessions.get_option_at_index(i).id
                                                      for i in range(sessions.option_count)],
                       what="the sidebar to drop it")
        assert replies(app) == []  # its messages left the screen with it
        await send(pilot, "Second question?")
        await wait_for(pilot, lambda: len(replies(app)) == 1 and not app.chat.busy)
        assert replies(app)[-1].text == "Second." and app.conversation.session_id != deleted
        assert not [n for n in notifications(app) if n.severity == "error"]
    (fresh,) = store.list_sessions()
    assert [m.content for m in store.messages(fresh.id)] == ["Second question?", "Second."]
    assert [f.name for f in store.files(fresh.id)] == ["notes.md"]  # the same files
