"""`xgen ask` killed with SIGKILL while the answer streams: the session survives.

The assistant message is saved before generation and updated as it grows
(assistant/persist.py), so after a kill -9 a new process finds the question, the answer
as far as it had been saved, and an intact database.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from assistant.cli import main
from assistant.safetext import printable
from assistant.store import Store

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Write a long, detailed essay about everything in these notes."


def wait_for_streamed_reply(db: Path, proc: subprocess.Popen, timeout: float = 120):
    """Poll the store until the assistant message holds some streamed text."""
    deadline = time.monotonic() + timeout
    while not db.exists():
        assert proc.poll() is None, "xgen ask ended before creating its database"
        assert time.monotonic() < deadline, "no database after two minutes"
        time.sleep(0.05)
    with Store(db) as store:
        while True:
            assert proc.poll() is None, "xgen ask ended before it could be killed mid-answer"
            assert time.monotonic() < deadline, "no streamed text after two minutes"
            for session in store.list_sessions():
                for message in store.messages(session.id):
                    if message.role == "assistant" and message.content and message.meta.get("finish") == "streaming":
                        return session.id, message
            time.sleep(0.02)


def test_sigkill_mid_answer_keeps_question_and_partial_answer(converted, tmp_path, monkeypatch):
    model = converted("q8_0")
    home = tmp_path / "home"
    notes = tmp_path / "notes.txt"
    notes.write_text("The cooling unit in hall 3 was serviced in spring.\n")
    env = dict(os.environ, XGEN_HOME=str(home), HF_HUB_OFFLINE="1")
    env.pop("XGEN_MODEL", None)
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "assistant.cli", "ask", str(notes), "-q", QUESTION, "--model", str(model),
             "--temperature", "0.8",  # sampled: a random-weight model rarely hits <|endoftext|> early
             "--max-tokens", "300"],  # long enough to be caught mid-answer, short enough to leave room
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    try:
        session_id, seen = wait_for_streamed_reply(home / "sessions.db", proc)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err.read_text(errors="replace")

    # A new process (a new Store, a new connection) finds both messages.
    with Store(home / "sessions.db") as store:
        (session,) = store.list_sessions()
        assert session.id == session_id and session.message_count == 2
        user, reply = store.messages(session_id)
    assert (user.role, user.content) == ("user", QUESTION)
    assert reply.role == "assistant" and reply.meta == {"finish": "streaming"}
    assert len(reply.content) >= len(seen.content) > 0  # at least what had been seen saved
    # What was saved is what the user had been shown, as far as it went (shown without the
    # control characters a random model's reply may hold: assistant/safetext.py).
    shown = out.read_text(errors="replace").split(f"> {QUESTION}\n\n", 1)[1]
    assert shown.startswith(printable(reply.content)), (reply.content[:80], shown[:80])

    with sqlite3.connect(home / "sessions.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    monkeypatch.setenv("XGEN_HOME", str(home))
    shown_session = CliRunner().invoke(main, ["sessions", "show", session_id[:8]])
    assert shown_session.exit_code == 0, shown_session.output
    text = shown_session.output
    assert f"user:\n{QUESTION}\n" in text
    assert f"assistant:\n{reply.content.strip()}\n" in text
    assert text.index("user:") < text.index("assistant:")
