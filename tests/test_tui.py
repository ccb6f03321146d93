"""The terminal app, driven with Textual's Pilot on a FakeEngine (and once on the tiny model)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from assistant.engines.fake import FakeEngine
from assistant.modelref import NO_MODEL, NoModel
from assistant.tui.app import XGenApp, create_app
from assistant.tui.screens.attach import AttachScreen
from assistant.tui.screens.export import ExportScreen
from assistant.tui.screens.passage import PassageScreen
from assistant.tui.screens.welcome import NoModelScreen
from assistant.tui.widgets.composer import Composer
from assistant.tui.widgets.messages import CitationButton, SummaryMessage, UserMessage
from models.errors import XGenError
from tests.test_tui_support import (  # noqa: F401 (store is a fixture)
    AUDIT, NOTES, SIZE, SummaryEngine, app_with, notifications, replies, store, sync, wait_for,
    wait_idle, write)

LONG_REPLY = " ".join(f"word{i}" for i in range(200))







async def send(pilot, text: str) -> None:
    """Type a message (set at once: pressing each key is slow) and press Enter."""
    composer = pilot.app.chat.query_one(Composer)
    composer.focus()
    composer.text = text
    composer.move_cursor(composer.document.end)
    await pilot.press("enter")


@sync
async def test_send_a_message_and_see_the_reply_streamed(store):
    engine = FakeEngine(["Widgets **left** on day 3, as the notes say."], step_delay=0.08)
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        assert app.chat.status.model == "fake-model" and app.chat.status.engine == "fake"
        await send(pilot, "When did they leave?")
        reply = (await wait_for(pilot, lambda: replies(app), what="a reply widget"))[0]
        # Streamed: part of the text is on screen before the reply is finished.
        partial = await wait_for(pilot, lambda: reply.streaming and reply.streamed_text, what="streamed text")
        assert "Widgets **left** on day 3, as the notes say.".startswith(partial)
        await wait_idle(pilot, app)
        assert reply.text == "Widgets **left** on day 3, as the notes say."
        assert "Widgets left on day 3" in reply.markdown.source.replace("**", "")
        assert [w.text for w in app.chat.query(UserMessage)] == ["When did they leave?"]
        assert app.chat.query_one(Composer).text == ""
    messages = store.messages(app.conversation.session_id)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "When did they leave?"), ("assistant", "Widgets **left** on day 3, as the notes say.")]
    assert messages[1].meta["finish"] == "eos" and messages[1].meta["stats"]["generated"] > 5


@sync
async def test_ctrl_j_adds_a_line_and_enter_sends_both(store):
    engine = FakeEngine()
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await pilot.click(Composer)
        await pilot.press(*"first", "ctrl+j", *"second")
        assert app.chat.query_one(Composer).text == "first\nsecond"
        await pilot.press("enter")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
    assert "first\nsecond" in engine.prompt_texts()[0]


@sync
async def test_escape_stops_the_reply_and_keeps_the_partial_text(store):
    engine = FakeEngine([LONG_REPLY], step_delay=0.03)
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Say many words")
        reply = (await wait_for(pilot, lambda: replies(app)))[0]
        await wait_for(pilot, lambda: len(reply.streamed_text) > 20, what="some streamed text")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.busy, timeout=3, what="the reply to stop")
        assert reply.meta["finish"] == "stopped"
        assert reply.text and LONG_REPLY.startswith(reply.text) and len(reply.text) < len(LONG_REPLY)
        assert "stopped" in str(reply.query_one(".meta").render())
        # The app is still usable: the next question gets a reply.
        engine.queue("Fine.")
        await send(pilot, "And now?")
        await wait_for(pilot, lambda: len(replies(app)) == 2 and not app.chat.busy)
        assert replies(app)[1].text == "Fine."
    saved = store.messages(app.conversation.session_id)[1]
    assert saved.content == reply.text and saved.meta["finish"] == "stopped"


@sync
async def test_a_reply_is_saved_while_it_is_written(store):
    """Killing the app mid-reply loses at most half a second of it."""
    engine = FakeEngine([LONG_REPLY], step_delay=0.02)
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Write a lot")
        await wait_for(pilot, lambda: app.conversation.session_id)
        session_id = app.conversation.session_id
        user, reply = await wait_for(pilot, lambda: len(store.messages(session_id)) == 2 and store.messages(session_id))
        assert user.content == "Write a lot"  # saved before generating
        saved = await wait_for(pilot, lambda: store.messages(session_id)[1].content, timeout=3,
                               what="a progressive save")
        assert app.chat.busy and LONG_REPLY.startswith(saved)
        assert store.messages(session_id)[1].meta == {"finish": "streaming"}
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.busy)


@sync
async def test_attach_a_file_by_typing_its_path(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, AttachScreen))
        path = app.screen.query_one("#attach-path")
        path.value = str(notes.parent) + "/"
        path.cursor_position = len(path.value)
        await pilot.press(*"notes.md", "enter")
        await wait_for(pilot, lambda: app.conversation.documents, what="the file to load")
        await pilot.pause()
        assert not isinstance(app.screen, AttachScreen)
        assert app.conversation.documents[0].name == "notes.md"
        files = store.files(app.conversation.session_id)
        assert [(f.name, f.path) for f in files] == [("notes.md", str(notes))] and files[0].n_tokens > 100
        assert "notes.md" in str(app.chat.query_one("#files").get_option_at_index(0).prompt)
        assert any("notes.md" in n.message for n in notifications(app))


@sync
async def test_an_unreadable_file_is_a_notification_with_the_next_step(store, tmp_path):
    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        (tmp_path / "folder").mkdir()
        write(tmp_path / "folder", "notes.md", NOTES)  # a folder is attached (issue 18), a missing file is not
        app.chat.attach_paths([str(tmp_path / "missing.txt"), str(tmp_path / "folder")])
        await wait_for(pilot, lambda: len(notifications(app)) >= 2, what="two notifications")
        errors = [n for n in notifications(app) if n.severity == "error"]
        assert len(errors) == 1
        assert "No such file" in errors[0].message and "Ctrl+O" in errors[0].message
        assert [d.name for d in app.conversation.documents] == ["folder"]
        assert app.screen is app.chat


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
async def test_an_answer_with_citations_opens_the_passage(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    engine = FakeEngine(["Widget 2 left on day 2 [1]."])
    app = app_with(engine, store, files=[str(notes)])
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        await send(pilot, "When did widget 2 leave?")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        await pilot.pause()
        button = app.chat.query_one(CitationButton)
        assert str(button.label).startswith("[1] notes.md:1-")
        # Under the answer, as under `xgen ask`: every passage given, the cited one marked.
        sources = str(replies(app)[0].query_one(".sources").render())
        assert sources.startswith("Sources (2 of 2 passages given to the model; * cited): * [1] notes.md:1-11 · "
                                  "[2] notes.md:")
        await pilot.click(CitationButton)
        await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen), what="the passage")
        text = str(app.screen.query_one("#passage-text").render())
        assert "Line 2: the shipment of widgets number 2" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.chat)
    meta = store.messages(app.conversation.session_id)[1].meta
    assert meta["citations"][0]["number"] == 1 and "Line 2:" in meta["citations"][0]["text"]


@sync
async def test_export_writes_markdown(store, home, tmp_path):
    engine = FakeEngine(["Here is the answer."])
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "A question")
        await wait_idle(pilot, app)
        await pilot.press("ctrl+t")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen) and app.screen)
        default = Path(dialog.default_path)
        assert default.parent == home / "exports" and default.name.startswith("a-question-")
        await pilot.press("enter")
        await wait_for(pilot, default.exists, what="the export")
        # ... or anywhere else.
        other = tmp_path / "out" / "chat.md"
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        app.screen.query_one("#export-path").value = str(other)
        await pilot.press("enter")
        await wait_for(pilot, other.exists)
    text = default.read_text()
    assert text.startswith("# A question") and "## User\n\nA question" in text
    assert "## Assistant\n\nHere is the answer." in text
    assert other.read_text() == text


@sync
async def test_copy_the_last_answer(store):
    app = app_with(FakeEngine(["Copy **me**."]), store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Question")
        await wait_idle(pilot, app)
        await pilot.press("ctrl+g")
        assert app.clipboard == "Copy **me**."


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
async def test_no_model_shows_how_to_get_one(store, home):
    app = create_app(store=store)  # the command line's loader, on an empty XGEN_HOME
    async with app.run_test(size=SIZE) as pilot:
        screen = await wait_for(pilot, lambda: isinstance(app.screen, NoModelScreen) and app.screen)
        text = await wait_for(pilot, lambda: screen.query("#welcome-text") and screen.query_one("#welcome-text").source)
        assert "xgen pull xgen-7b-8k-inst" in text and "xgen demo" in text
        await pilot.press("escape")  # browse sessions without a model
        await wait_for(pilot, lambda: app.screen is app.chat)
        assert app.chat.status.model == "no model"
        await send(pilot, "Hello?")
        await wait_for(pilot, lambda: notifications(app))
        assert "xgen demo" in notifications(app)[-1].message
        assert app.chat.query_one(Composer).text == "Hello?"  # not lost


@sync
async def test_a_model_that_fails_to_load_is_a_notification(store):
    def broken(ref):
        if ref == "gone.gguf":
            raise XGenError("gone.gguf: no such file or folder")
        raise NoModel(NO_MODEL)

    app = create_app(engine_factory=broken, store=store, model="gone.gguf")
    async with app.run_test(size=SIZE) as pilot:
        note = await wait_for(pilot, lambda: notifications(app) and notifications(app)[-1])
        assert note.severity == "error" and "gone.gguf: no such file" in note.message
        assert "Switch model" in note.message and app.screen is app.chat


@sync
async def test_context_full_is_a_notification_not_a_traceback(store):
    engine = FakeEngine(n_ctx=256)
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        app.chat.query_one(Composer).text = "why " * 400
        await pilot.click(Composer)
        await pilot.press("end", "enter")
        await wait_for(pilot, lambda: notifications(app) and not app.chat.busy)
        note = notifications(app)[-1]
        assert note.severity == "error" and "context holds 256" in note.message
        assert "shorten the question" in note.message
        # Refused before anything was saved: no session, and the question is back to edit.
        assert replies(app) == [] and store.list_sessions() == []
        assert app.chat.query_one(Composer).text.strip() == ("why " * 400).strip()


@sync
async def test_context_used_grows_after_a_reply(store):
    engine = FakeEngine(["One.", "Two."])
    app = app_with(engine, store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        status = app.chat.status
        assert status.context_used == 0 and status.n_ctx == 2048
        assert "ctx 0/2,048" in str(app.chat.query_one("#context").render())
        await send(pilot, "First")
        await wait_idle(pilot, app)
        first = status.context_used
        assert first > 0 and f"ctx {first:,}/2,048" in str(app.chat.query_one("#context").render())
        assert status.speed > 0
        await send(pilot, "Second")
        await wait_for(pilot, lambda: len(replies(app)) == 2 and not app.chat.busy)
        assert status.context_used > first


@sync
async def test_command_palette_lists_the_commands(store):
    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        titles = [c.title for c in app.get_system_commands(app.chat)]
        for title in ("New session", "Switch session", "Attach file", "Summarize file", "Switch model",
                      "Export session to Markdown", "Copy last answer", "Clear"):
            assert title in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"export")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen) or notifications(app))


def test_xgen_alone_and_xgen_chat_open_the_app(home, monkeypatch, tmp_path):
    from assistant.cli import main

    opened = []

    def fake_run(self):
        opened.append((self.initial_files, self.model_ref, self.engine_factory.engine_kind))

    monkeypatch.setattr(XGenApp, "run", fake_run)
    runner = CliRunner()
    assert runner.invoke(main, [], catch_exceptions=False).exit_code == 0
    notes = write(tmp_path, "notes.md", NOTES)
    result = runner.invoke(main, ["chat", str(notes), "--model", "demo", "--engine", "llama"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert opened == [([], None, None), ([str(notes)], "demo", "llama")]
    assert "Open the terminal app" in runner.invoke(main, ["chat", "--help"]).output


@sync
async def test_end_to_end_on_the_tiny_model(store, converted, tmp_path):
    from assistant.engines import open_engine

    model = converted("q8_0")
    notes = write(tmp_path, "notes.md", NOTES)
    app = create_app(engine_factory=lambda ref: open_engine("llama", model, n_threads=1, n_ctx=512), store=store,
                     files=[str(notes)])
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app, timeout=60)
        assert app.chat.status.engine == "llama"
        await wait_for(pilot, lambda: app.conversation.documents)
        await send(pilot, "When did widget 2 leave?")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy, timeout=60)
        (reply,) = replies(app)
        assert reply.meta["finish"] in ("eos", "length", "context")
        assert reply.meta["stats"]["generated"] > 0
        assert app.chat.status.context_used > 0
    saved = store.messages(app.conversation.session_id)
    assert saved[1].content == reply.text


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
async def test_clear_starts_afresh_with_the_same_files(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    app = app_with(FakeEngine(["Answer."]), store, files=[str(notes)])
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        await send(pilot, "Question")
        await wait_idle(pilot, app)
        old = app.conversation.session_id
        assert app.chat.status.context_used > 0
        await app.chat.action_clear()
        await pilot.pause()
        assert app.conversation.session_id not in (None, old)
        assert [d.name for d in app.conversation.documents] == ["notes.md"]
        assert not app.chat.query(UserMessage) and app.chat.status.context_used == 0
    assert len(store.messages(old)) == 2  # the old conversation is kept


@sync
async def test_switch_model_loads_the_chosen_one(store, monkeypatch):
    asked = []

    def factory(ref):
        asked.append(ref)
        return FakeEngine(model_name=ref or "default-model", n_ctx=1024 if ref else 2048)

    monkeypatch.setattr("assistant.tui.app.local_models", lambda: [("/models/other.gguf", "other.gguf (1 GiB)")])
    app = create_app(engine_factory=factory, store=store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        assert app.chat.status.model == "default-model"
        app.action_switch_model()
        await wait_for(pilot, lambda: app.screen is not app.chat)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.loaded and app.loaded.name == "/models/other.gguf")
        assert asked == [None, "/models/other.gguf"] and app.chat.status.n_ctx == 1024


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
        assert app.chat.query_one(Composer).text == "Early question"  # kept until it is sent
        release.set()
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy)
        assert replies(app)[0].text == "Ready now." and app.chat.query_one(Composer).text == ""


def test_path_completion(tmp_path):
    from assistant.tui.screens.attach import complete_path

    (tmp_path / "notes.md").write_text("x")
    (tmp_path / "reports").mkdir()
    (tmp_path / ".hidden").write_text("x")
    base = str(tmp_path)
    assert complete_path(f"{base}/no") == f"{base}/notes.md"
    assert complete_path(f"{base}/rep") == f"{base}/reports/"
    assert complete_path(f"{base}/reports") == f"{base}/reports/"
    assert complete_path(f"{base}/notes.md") is None
    assert complete_path(f"{base}/.h") == f"{base}/.hidden"
    assert complete_path(f"{base}/") == f"{base}/notes.md"  # hidden entries are skipped
    assert complete_path(f"{base}/missing/x") is None and complete_path("") is None


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
async def test_the_app_names_the_demo_when_it_opens_it_by_default(store, home, converted):
    import shutil

    from models.paths import models_dir

    models_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(converted("q8_0"), models_dir() / "xgen-demo-q8_0.gguf")
    app = create_app(store=store)  # the command line's loader, no --model
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app, timeout=60)
        assert "demo" in app.chat.status.model and "random weights" in app.chat.status.model
        (note,) = [n for n in notifications(app) if n.title == "Demo model"]
        assert "xgen pull xgen-7b-8k-inst" in note.message
