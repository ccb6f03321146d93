"""`xgen sessions list/show/export/delete` on a store in a temporary data directory."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from assistant.cli import main
from assistant.store import Store
from assistant.store import store as store_module
from tests.cli_helpers import assert_one_line_error


@pytest.fixture
def filled(home, monkeypatch):
    """Two sessions with known ids and times: a cited Q&A (newest) and an untitled empty one."""
    ids = iter([uuid.UUID("aaaa1111" + "0" * 24), uuid.UUID("bbbb2222" + "0" * 24)])
    monkeypatch.setattr(store_module.uuid, "uuid4", lambda: next(ids))
    times = iter(datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc) + timedelta(minutes=i) for i in range(100))
    with Store(clock=lambda: next(times)) as s:
        qa = s.create_session(model="xgen-7b-8k-inst-q4_k_m", engine="llama.cpp")
        empty = s.create_session()
        s.attach_file(qa.id, str(home / "report.txt"), "report.txt", "ab" * 32, 321)
        s.add_message(qa.id, "user", "What changed in Q3?")
        s.add_message(qa.id, "assistant", "Revenue rose 12% [2].", meta={
            "citations": [{"number": 2, "label": "report.txt:12-30", "text": "Revenue grew 12% in Q3."}]})
    return qa, empty


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, ["sessions", *args], input=input)


def test_help_lists_the_commands(home):
    result = CliRunner().invoke(main, ["sessions", "--help"])
    assert result.exit_code == 0
    for command in ("list", "show", "export", "delete"):
        assert command in result.output
    assert "sessions" in CliRunner().invoke(main, ["--help"]).output


def test_list_empty(home):
    result = run("list")
    assert result.exit_code == 0 and result.output == "no sessions yet\n"
    assert (home / "sessions.db").exists()  # in the data directory, nowhere else


def test_list_shows_newest_first(filled):
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "UPDATED", "MSGS", "TITLE"]
    local = datetime(2024, 5, 1, 9, 4, tzinfo=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")
    assert lines[1] == f"aaaa1111  {local}     2  What changed in Q3?"  # id, updated (local time), messages
    assert lines[2].split()[0] == "bbbb2222" and lines[2].endswith("     0  (untitled)")
    assert len(lines) == 3
    assert run("list", "-n", "1").output.count("\n") == 2


def test_show_prints_the_conversation(filled):
    result = run("show", "aaaa")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("What changed in Q3?\nsession aaaa1111" + "0" * 24 + ", xgen-7b-8k-inst-q4_k_m (llama.cpp), started ")
    assert "files: report.txt\n" in out
    assert out.endswith("\nuser:\nWhat changed in Q3?\n\nassistant:\nRevenue rose 12% [2].\n  [2] report.txt:12-30\n")


def test_export_to_stdout(filled):
    qa, _ = filled
    result = run("export", "aaaa11")
    assert result.exit_code == 0, result.output
    with Store() as s:
        assert result.stdout == s.export_markdown(qa.id)
    assert result.stdout.startswith("# What changed in Q3?\n")
    assert "[2] report.txt:12-30\n\n> Revenue grew 12% in Q3.\n" in result.stdout


def test_export_to_a_file_and_refuse_to_overwrite(filled, tmp_path):
    qa, _ = filled
    out = tmp_path / "chat.md"
    result = run("export", "aaaa", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"wrote {out}" in result.stderr
    with Store() as s:
        expected = s.export_markdown(qa.id)
    assert out.read_text(encoding="utf-8") == expected

    out.write_text("my own notes", encoding="utf-8")
    refused = run("export", "aaaa", "-o", str(out))
    assert_one_line_error(refused, str(out), "already exists", "--force")
    assert out.read_text(encoding="utf-8") == "my own notes"

    forced = run("export", "aaaa", "-o", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert out.read_text(encoding="utf-8") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.md", "home"]  # no .partial left


def test_export_into_a_missing_folder(filled, tmp_path):
    assert_one_line_error(run("export", "aaaa", "-o", str(tmp_path / "nope" / "chat.md")), "no such folder")


def test_delete_with_yes(filled):
    qa, empty = filled
    result = run("delete", "aaaa", "--yes")
    assert result.exit_code == 0, result.output
    assert result.output == "deleted session aaaa1111\n"
    with Store() as s:
        assert [x.id for x in s.list_sessions()] == [empty.id]
        assert s.messages(qa.id) == [] and s.files(qa.id) == []


def test_delete_asks_first(filled):
    qa, _ = filled
    declined = run("delete", "aaaa", input="n\n")
    assert declined.exit_code == 1
    assert "delete session aaaa1111 'What changed in Q3?' (2 messages)?" in declined.output
    with Store() as s:
        assert s.get_session(qa.id).message_count == 2
    accepted = run("delete", "aaaa", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    with Store() as s:
        assert len(s.list_sessions()) == 1


@pytest.mark.parametrize("command", ["show", "export", "delete"])
def test_unknown_id_is_a_one_line_error(filled, command):
    assert_one_line_error(run(command, "zzz"), "no session 'zzz'", "xgen sessions list")


def test_ambiguous_id_is_a_one_line_error(filled, monkeypatch):
    monkeypatch.setattr(store_module.uuid, "uuid4", lambda: uuid.UUID("aaaa9999" + "0" * 24))
    with Store() as s:
        s.create_session()
    assert_one_line_error(run("show", "aaaa"), "ambiguous", "aaaa1111", "aaaa9999")
    with Store() as s:
        assert len(s.list_sessions()) == 3  # nothing deleted by a vague id
    assert_one_line_error(run("delete", "aaaa", "--yes"), "ambiguous")
