"""The screen at 80x24 to 120x40: the status bar, the sidebar, the footer, visible focus, the palette, screenshots."""

from __future__ import annotations

from textual.widgets import OptionList

from tests.fake_engine import FakeEngine
from assistant.tui.screens.export import ExportScreen
from assistant.tui.widgets.conversation import ConversationView
from assistant.tui.widgets.sidebar import Sidebar

from tests.tui_helpers import (LARGE, NOTES, SIZE, SMALL, app_with, composer, notifications, send, sync, wait_for,
                               wait_idle, write)

WORDS = " ".join(f"word{i}" for i in range(60))


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


@sync
async def test_the_footer_shows_quit_and_the_sidebar_key_at_80_columns(store):
    app = app_with(FakeEngine([WORDS], step_delay=0.02), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)

        def shown() -> dict[str, str]:
            return {k.key: k.description for k in app.chat.query("FooterKey")
                    if k.region.width and k.region.right <= SMALL[0]}

        assert shown().get("ctrl+q") == "Quit" and shown().get("f2") == "Sidebar"
        await send(pilot, "Write")
        await wait_for(pilot, lambda: app.chat.busy)
        await pilot.pause()
        keys = shown()  # Esc Stop joins them and everything still fits
        assert "escape" in keys and "ctrl+q" in keys and "f2" in keys
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.busy)


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
        note = await wait_for(pilot, lambda: [n for n in notifications(app) if "Screenshot" in (n.title or "")],
                              what="the screenshot notification")
        assert note[-1].severity == "information", note[-1].message
    saved = list((home / "screenshots").glob("*.svg"))
    assert len(saved) == 1 and str(saved[0]) in note[-1].message and saved[0].read_text().startswith("<svg")


def status_text(app) -> dict[str, str]:
    from textual.widgets import Label

    return {label.id: str(label.render()) for label in app.chat.status.query(Label) if label.display}


def status_fits(app) -> None:
    """Each field of the status bar shows its whole text (the model and the activity
    apart, which may end in "…" only when the bar is full)."""
    from textual.widgets import Label

    for label in app.chat.status.query(Label):
        if label.display and label.id in ("context", "speed", "elapsed"):
            assert label.region.width >= len(str(label.render()).rstrip()), (label.id, label.region)


@sync
async def test_the_status_bar_shows_the_context_and_speed_while_summarizing_at_80_columns(store, tmp_path):
    from tests.tui_helpers import AUDIT, SummaryEngine

    audit = write(tmp_path, "audit.txt", AUDIT)
    # Two parts written (at a measurable pace), then the third held: no text streamed yet.
    engine = SummaryEngine(n_ctx=512, hold_from_part=3, step_delay=0.01)
    app = app_with(engine, store, files=[str(audit)])
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: engine.held_prompt, what="part 3 held")
        await pilot.pause(0.3)
        status = app.chat.status
        shown = status_text(app)
        assert shown["activity"] == "summarizing audit.txt…"
        assert shown["context"].startswith("ctx ") and "/512" in shown["context"]
        assert status.speed > 0 and shown["speed"].endswith(" tok/s") and "–" not in shown["speed"]
        status_fits(app)
        assert app.chat.query_one("#context").region.width >= len("ctx 000/512 00%")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.busy)


@sync
async def test_the_model_name_is_whole_when_the_status_bar_has_room(store):
    from assistant.tui.host import ModelState

    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        name = "xgen-7b-8k-inst-q4_k_m-long-name"
        app.chat.model = ModelState(label=name, engine="llama.cpp", n_ctx=8192)
        await pilot.pause()
        label = app.chat.query_one("#model")
        assert str(label.render()) == f"{name} · llama.cpp"
        assert label.region.width == len(f"{name} · llama.cpp")  # 44 of 80 columns: not cut
        status_fits(app)
        app.chat.activity = "summarizing a-file-with-a-long-name-as-well.txt…"  # no room for both
        await pilot.pause()
        activity = app.chat.query_one("#activity")
        assert label.region.width >= 20 and activity.region.width >= 10
        assert label.region.right <= activity.region.x and activity.region.right <= app.chat.query_one("#context").region.x
        status_fits(app)


@sync
async def test_attaching_a_file_during_a_reply_keeps_the_context_shown(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    app = app_with(FakeEngine(["One.", WORDS + " " + WORDS], step_delay=0.03), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "First")
        await wait_idle(pilot, app)
        before = app.chat.context_used
        assert before > 0
        await send(pilot, "Second")
        await wait_for(pilot, lambda: app.chat.busy)
        app.chat.attach_paths([str(notes)])
        await wait_for(pilot, lambda: app.conversation.documents and not app.chat.files.reading)
        await pilot.pause()
        assert app.chat.busy  # still writing
        assert app.chat.status.context_shown > before and app.chat.activity == "writing…"
        await wait_idle(pilot, app, timeout=20)
        assert app.chat.activity == "" and app.chat.context_used == app.conversation.context_used


@sync
async def test_a_toast_leaves_the_status_bar_and_the_footer_visible(store):
    """At 80 columns the demo's warning (30 s) covered the context and speed fields."""
    from assistant.modelref import DEMO_NOTE

    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SMALL, notifications=True) as pilot:
        await wait_idle(pilot, app)
        # As `xgen chat big.log` shows them: the note on the large file, then the demo's.
        app.notify("big.log is too large to ask about (51.0 MB; the limit is 50 MB): it can only be "
                   "summarized, read in parts", title="Note", severity="warning", timeout=10)
        app.notify(DEMO_NOTE[0].upper() + DEMO_NOTE[1:] + ".", title="Demo model", severity="warning", timeout=30)
        toasts = await wait_for(pilot, lambda: [t for t in app.screen.query("Toast") if t.region.height]
                                and list(app.screen.query("Toast")), what="the toasts")
        await pilot.pause(0.3)
        status = app.chat.status.region
        assert status.width == 80 and status.y == 22
        for toast in toasts:
            assert toast.region.height and not toast.region.overlaps(status), (toast.region, status)
            assert toast.region.bottom <= status.y and not toast.region.overlaps(app.chat.composer.region)


@sync
async def test_f1_and_the_palettes_keys_list_the_bound_keys_and_esc_closes_the_list(store):
    """F1 lists the keys, read from the bindings (every key bound on the main screen and
    the app is there), with the input's and Tab's; the palette's "Keys" opens the same
    list, which Esc closes (Textual's own keys panel ignored Esc and squeezed the footer)."""
    from assistant.tui.app import XGenApp
    from assistant.tui.chat import ChatScreen
    from assistant.tui.screens.keys import KeysScreen, key_name
    from assistant.tui.widgets.composer import Composer

    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("f1")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, KeysScreen) and app.screen)
        listed = {str(label.render()): str(row.query_one(".keys-what").render())
                  for row in dialog.query(".keys-row") for label in row.query(".keys-key")}
        keys = " / ".join(listed)
        for binding in [*ChatScreen.BINDINGS, *Composer.BINDINGS, *XGenApp.BINDINGS]:
            for key in binding.key.split(","):
                assert key_name(key) in keys, key
        assert listed["Ctrl+G"].startswith("copy the last answer") and listed["Esc / Ctrl+C"].startswith("stop")
        for key in ("Ctrl+P", "Up / Down", "Tab / Shift+Tab", "PageUp", "PageDown", "F1", "Ctrl+J / Shift+Enter"):
            assert key in listed, key
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.chat)
        await pilot.press("ctrl+p")
        await pilot.press(*"keys")
        await pilot.pause(0.4)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, KeysScreen), what="the keys from the palette")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.chat)
        await pilot.pause()
        assert not app.chat.query("HelpPanel") and app.focused is composer(app)
