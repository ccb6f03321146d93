"""Export to Markdown and copying text out."""

from __future__ import annotations

from pathlib import Path

from tests.fake_engine import FakeEngine
from assistant.tui.screens.export import ExportScreen

from tests.tui_helpers import SIZE, SMALL, app_with, replies, send, sync, wait_for, wait_idle, write


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
async def test_the_export_has_plain_apostrophes_where_the_model_escaped_them(store, tmp_path):
    """XGen writes it\\'s; on screen Markdown hides the backslash, the export showed it."""

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


@sync
async def test_export_asks_before_replacing_a_file_and_writes_as_the_command_line_does(store, tmp_path):
    """Ctrl+T onto an existing file asks first (Cancel focused); it writes through a link
    to its target and refuses a FIFO in the dialog, as `xgen sessions export -o` does."""
    import os

    from assistant.tui.screens.dialogs import ConfirmScreen

    existing = write(tmp_path, "existing.md", "notes\n")
    app = app_with(FakeEngine(["Here is the answer."]), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "A question")
        await wait_idle(pilot, app)

        async def export_to(path) -> None:
            if not isinstance(app.screen, ExportScreen):
                await pilot.press("ctrl+t")
                await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
            app.screen.query_one("#export-path").value = str(path)
            await pilot.press("enter")
            await pilot.pause()

        await export_to(existing)
        confirm = await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen)
        assert str(confirm.query_one(".dialog-title").render()) == "Replace existing.md?"
        await pilot.press("enter")  # the focus is on Cancel
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        assert existing.read_text() == "notes\n"
        await export_to(existing)
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is app.chat)
        assert existing.read_text().startswith("# A question")

        # A link is written through: the link stays, its target gets the text.
        target = tmp_path / "real.md"
        link = tmp_path / "link.md"
        link.symlink_to(target)
        await export_to(link)
        await wait_for(pilot, lambda: app.screen is app.chat)  # nothing there yet: no question
        assert link.is_symlink() and target.read_text().startswith("# A question")

        fifo = tmp_path / "pipe.md"
        os.mkfifo(fifo)
        await export_to(fifo)
        assert isinstance(app.screen, ExportScreen)
        assert "pipe.md is a FIFO" in str(app.screen.query_one("#export-error").render())
        await pilot.press("escape")
    assert not list(tmp_path.glob(".*.partial"))
