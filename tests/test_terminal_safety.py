"""Nothing from outside drives the user's terminal: a reply, a file name, a stored message
or a server's error reaches the screen without its control characters (`ESC ] 52` would
write the clipboard, `ESC ] 0` the window title, `ESC [ 2 J` clear the screen)."""

from __future__ import annotations

import re

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from assistant.cli import main
from assistant.safetext import printable
from assistant.store import Store
from bench.openai_double import OpenAIDouble

CLIPBOARD = "\x1b]52;c;SGVsbG8=\x07"
TITLE = "\x1b]0;PWNED\x07"
CLEAR = "\x1b[2J"
C1_CSI = "\x9b31m"
HOSTILE_REPLY = f"Fine{CLIPBOARD} answer{TITLE} [1]{CLEAR}{C1_CSI}\rdone."
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_printable_keeps_text_newlines_and_tabs():
    assert printable(f"a\tb\n{TITLE}c{C1_CSI}\x7f\x00") == "a\tb\n]0;PWNEDc31m"


@given(st.text())
def test_printable_leaves_no_control_and_drops_only_controls(text):
    out = printable(text)
    assert not CONTROLS.search(out)
    assert out == "".join(c for c in text if not CONTROLS.match(c))


def test_ask_prints_a_hostile_reply_and_file_name_inertly(home, tmp_path):
    doc = tmp_path / f"esc{TITLE}.txt"
    doc.write_text("The cooling unit in hall 3 failed on 2 September.\n")
    with OpenAIDouble([HOSTILE_REPLY]) as server:
        result = run("ask", str(doc), "-q", "When?", "--model", server.url)
    assert result.exit_code == 0, result.output
    assert not CONTROLS.search(result.output), repr(result.output)
    # (click itself drops a whole CSI sequence such as ESC [ 2 J when not writing to a terminal)
    assert "Fine]52;c;SGVsbG8= answer]0;PWNED [1]" in result.output and "31mdone." in result.output
    assert "esc]0;PWNED.txt" in result.output  # the Sources line names the file, inert

    with Store() as store:
        (session,) = store.list_sessions()
        stored = store.messages(session.id)[-1].content
    # Kept as received; only its display is made safe.
    assert CLIPBOARD in stored

    shown = run("sessions", "show", session.id[:8])
    assert shown.exit_code == 0 and "answer]0;PWNED" in shown.output
    assert not CONTROLS.search(shown.output)
    exported = run("sessions", "export", session.id[:8])
    assert exported.exit_code == 0 and not CONTROLS.search(exported.output)
    target = tmp_path / "out.md"
    written = run("sessions", "export", session.id[:8], "-o", str(target))
    assert written.exit_code == 0, written.output
    assert "answer]0;PWNED" in target.read_text() and not CONTROLS.search(target.read_text())


def test_an_error_naming_a_hostile_file_is_printed_inertly(home, tmp_path):
    missing = tmp_path / f"gone{CLEAR}{TITLE}.txt"
    result = run("ask", str(missing), "-q", "Anything?", "--model", "http://127.0.0.1:9")
    assert result.exit_code != 0
    assert "gone" in result.output and "]0;PWNED.txt" in result.output
    assert not CONTROLS.search(result.output)


def test_the_app_draws_a_hostile_reply_and_file_name_inertly(store, tmp_path):
    from tests.fake_engine import FakeEngine
    from assistant.tui.widgets.messages import ReplyMessage
    from tests.tui_helpers import SIZE, app_with, sync, wait_for, wait_idle

    doc = tmp_path / f"notes{TITLE}.txt"
    doc.write_text("The cooling unit in hall 3 failed on 2 September.\n")

    @sync
    async def drive():
        app = app_with(FakeEngine([HOSTILE_REPLY]), store, files=[str(doc)])
        async with app.run_test(size=SIZE) as pilot:
            await wait_idle(pilot, app)
            app.chat.query_one("Composer").text = "When?"
            await pilot.press("enter")
            await wait_for(pilot, lambda: [w for w in app.chat.query(ReplyMessage) if not w.streaming],
                           what="the finished reply")
            await wait_idle(pilot, app)
            app.notify(f"toast about {doc.name}")
            await pilot.pause()
            return app.export_screenshot()

    screen = drive()
    assert "answer]0;PWNED" in screen and "notes]0;PWNED.txt" in screen
    assert "\x1b" not in screen and "\x9b" not in screen
