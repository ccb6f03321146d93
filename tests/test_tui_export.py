"""Export to Markdown and copying text out."""

from __future__ import annotations

from pathlib import Path

from tests.fake_engine import FakeEngine
from assistant.tui.screens.export import ExportScreen

from tests.tui_helpers import SIZE, SMALL, app_with, replies, send, sync, wait_for, wait_idle


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
