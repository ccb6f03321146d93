"""The model: loading, none, a failure, switching, browsing to a file, the demo, the tiny model end to end."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from textual.widgets import OptionList

from tests.cli_helpers import assert_one_line_error
from tests.fake_engine import FakeEngine
from assistant.modelref import NO_MODEL, NoModel
from assistant.tui.app import XGenApp, create_app
from assistant.tui.screens.welcome import NoModelScreen
from models.errors import XGenError

from tests.tui_helpers import (NOTES, SIZE, SMALL, composer, notifications, replies, send, sync, wait_for, wait_idle,
                               write)


@sync
async def test_no_model_shows_how_to_get_one(store, home):
    app = create_app(store=store)  # the command line's loader, on an empty XGEN_HOME
    async with app.run_test(size=SIZE) as pilot:
        screen = await wait_for(pilot, lambda: isinstance(app.screen, NoModelScreen) and app.screen)
        text = await wait_for(pilot, lambda: screen.query("#welcome-text") and screen.query_one("#welcome-text").source)
        assert "xgen pull xgen-7b-8k-inst" in text and "Build the demo now" in text
        await pilot.press("escape")  # browse sessions without a model
        await wait_for(pilot, lambda: app.screen is app.chat)
        assert app.chat.status.model.label == "no model"
        await send(pilot, "Hello?")
        await wait_for(pilot, lambda: notifications(app))
        assert "xgen demo" in notifications(app)[-1].message
        assert composer(app).text == "Hello?"  # not lost


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
async def test_switch_model_loads_the_chosen_one(store, monkeypatch):
    asked = []

    def factory(ref):
        asked.append(ref)
        return FakeEngine(model_name=ref or "default-model", n_ctx=1024 if ref else 2048)

    monkeypatch.setattr("assistant.tui.app.local_models", lambda: [("/models/other.gguf", "other.gguf (1 GiB)")])
    app = create_app(engine_factory=factory, store=store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        assert app.chat.status.model.label == "default-model"
        app.action_switch_model()
        await wait_for(pilot, lambda: app.screen is not app.chat)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.loaded and app.loaded.name == "/models/other.gguf")
        assert asked == [None, "/models/other.gguf"] and app.chat.status.model.n_ctx == 1024


@sync
async def test_a_bad_pick_in_switch_model_keeps_the_model_in_use(store, monkeypatch):
    closed = []

    class Engine(FakeEngine):
        def close(self) -> None:
            closed.append(self.model_name)

    def factory(ref):
        if ref == "/models/bad.gguf":
            raise XGenError("/models/bad.gguf: not a GGUF file")
        return Engine(model_name="working-model")

    monkeypatch.setattr("assistant.tui.app.local_models", lambda: [("/models/bad.gguf", "bad.gguf (1 GiB)")])
    app = create_app(engine_factory=factory, store=store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        working = app.loaded
        app.action_switch_model()
        await wait_for(pilot, lambda: app.screen is not app.chat)
        await pilot.press("enter")
        note = await wait_for(pilot, lambda: [n for n in notifications(app) if n.title == "Cannot load the model"])
        await wait_for(pilot, lambda: not app.model_loading)
        assert "not a GGUF file" in note[-1].message and "Still using working-model" in note[-1].message
        assert app.loaded is working and closed == [] and app.chat.status.model.label == "working-model"
        await send(pilot, "Still there?")
        await wait_idle(pilot, app)
        assert replies(app)[-1].text == "OK."


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
        options = picker.query_one(OptionList)
        assert [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)] == [
            "Connect to a server URL…", "Browse for a .gguf file…"]
        await pilot.press("down", "enter")
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


@sync
async def test_the_app_names_the_demo_when_it_opens_it_by_default(store, home, converted):
    import shutil

    from models.paths import models_dir

    models_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(converted("q8_0"), models_dir() / "xgen-demo-q8_0.gguf")
    app = create_app(store=store)  # the command line's loader, no --model
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app, timeout=60)
        assert "demo" in app.chat.status.model.label and "random weights" in app.chat.status.model.label
        (note,) = [n for n in notifications(app) if n.title == "Demo model"]
        assert "xgen pull xgen-7b-8k-inst" in note.message


@sync
async def test_retry_on_the_welcome_dialog_names_the_demo_too(store, home, converted):
    import shutil

    from models.paths import models_dir

    app = create_app(store=store)  # the command line's loader, no model yet
    async with app.run_test(size=SMALL) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, NoModelScreen))
        models_dir().mkdir(parents=True, exist_ok=True)
        shutil.copy(converted("q8_0"), models_dir() / "xgen-demo-q8_0.gguf")  # `xgen demo` in another terminal
        await pilot.press("r")
        await wait_idle(pilot, app, timeout=60)
        assert "random weights" in app.chat.status.model.label
        (note,) = [n for n in notifications(app) if n.title == "Demo model"]
        assert "random" in note.message and note.severity == "warning"


@sync
async def test_end_to_end_on_the_tiny_model(store, converted, tmp_path):
    from assistant.engines import open_engine

    model = converted("q8_0")
    notes = write(tmp_path, "notes.md", NOTES)
    app = create_app(engine_factory=lambda ref: open_engine("llama", model, n_threads=1, n_ctx=512), store=store,
                     files=[str(notes)])
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app, timeout=60)
        assert app.chat.status.model.engine == "llama"
        await wait_for(pilot, lambda: app.conversation.documents)
        await send(pilot, "When did widget 2 leave?")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy, timeout=60)
        (reply,) = replies(app)
        assert reply.meta["finish"] in ("eos", "length", "context")
        assert reply.meta["stats"]["generated"] > 0
        assert app.chat.status.context_used > 0
    saved = store.messages(app.conversation.session_id)
    assert saved[1].content == reply.text


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


@pytest.mark.parametrize("args", [["-s", "zzzz"], ["chat", "--session", "zzzz"]])
def test_an_unknown_session_is_refused_before_the_app_opens(home, monkeypatch, args):
    from assistant.cli import main

    opened = []
    monkeypatch.setattr(XGenApp, "run", lambda self: opened.append(self.initial_session))
    assert_one_line_error(CliRunner().invoke(main, args), "no session 'zzzz'", "xgen sessions list")
    assert opened == []  # not the app in limbo


def test_a_session_prefix_opens_the_app_on_that_session(home, monkeypatch):
    from assistant.cli import main
    from assistant.store import Store

    with Store() as store:
        session = store.create_session("Hello")
    opened = []
    monkeypatch.setattr(XGenApp, "run", lambda self: opened.append(self.initial_session))
    assert CliRunner().invoke(main, ["-s", session.id[:6]], catch_exceptions=False).exit_code == 0
    assert opened == [session.id]


@sync
async def test_build_the_demo_now_from_the_welcome_dialog(store, home, converted, monkeypatch):
    import shutil

    from models.paths import models_dir

    steps = ["demo checkpoint: ready", "converted to xgen-demo-q8_0.gguf"]
    release = __import__("threading").Event()

    def build_demo(echo):  # stands in for converter.demo.build_demo (`xgen demo`, ~30 s): its steps, its file
        for step in steps:
            echo(step)
        release.wait(10)
        models_dir().mkdir(parents=True, exist_ok=True)
        return shutil.copy(converted("q8_0"), models_dir() / "xgen-demo-q8_0.gguf")

    monkeypatch.setattr("assistant.tui.app._build_demo", build_demo)
    app = create_app(store=store)  # the command line's loader, no model yet
    async with app.run_test(size=SMALL) as pilot:
        screen = await wait_for(pilot, lambda: isinstance(app.screen, NoModelScreen) and app.screen)
        await pilot.press("d")
        progress = screen.query_one("#welcome-progress")
        await wait_for(pilot, lambda: str(progress.render()) == steps[-1], what="the build's progress")
        await pilot.press("q")  # ignored while it builds
        assert app.screen is screen
        release.set()
        await wait_idle(pilot, app, timeout=60)
        assert app.screen is app.chat and "random weights" in app.chat.status.model.label
        assert [n for n in notifications(app) if n.title == "Demo model"]


@sync
async def test_switch_model_retries_a_server_and_connects_to_a_url(store, monkeypatch):
    from assistant.modelref import open_model
    from assistant.tui.screens.dialogs import TextScreen
    from bench.openai_double import OpenAIDouble

    monkeypatch.setattr("assistant.tui.app.local_models", lambda: [])
    with OpenAIDouble(["First server."]) as first, OpenAIDouble(["Second server."]) as second:
        up = False

        def factory(ref):
            if not up:  # as the remote engine says it when the server is down
                raise XGenError(f"cannot reach {ref}: [Errno 111] Connection refused; is the server running?")
            return open_model(ref)

        app = create_app(engine_factory=factory, store=store, model=first.url)
        async with app.run_test(size=SMALL) as pilot:
            note = await wait_for(pilot, lambda: notifications(app) and notifications(app)[-1])
            assert "is the server running? Ctrl+P" in note.message and "?." not in note.message
            up = True
            app.action_switch_model()
            picker = await wait_for(pilot, lambda: app.screen is not app.chat and app.screen.query(OptionList)
                                    and app.screen.query_one(OptionList))
            assert str(picker.get_option_at_index(picker.highlighted).prompt).startswith(f"Retry {first.url}")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.loaded and app.loaded.name == first.url, what="the retried server")
            app.action_switch_model()
            picker = await wait_for(pilot, lambda: app.screen is not app.chat and app.screen.query(OptionList)
                                    and app.screen.query_one(OptionList))
            picker.highlighted = picker.get_option_index("connect:")
            await pilot.press("enter")
            dialog = await wait_for(pilot, lambda: isinstance(app.screen, TextScreen) and app.screen)
            dialog.query_one("#text-value").value = second.url
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.loaded and app.loaded.name == second.url, what="the second server")
            await send(pilot, "Which one?")
            await wait_idle(pilot, app)
            assert replies(app)[-1].text == "Second server."
