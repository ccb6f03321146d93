"""Attaching files: the dialog, path completion, errors, twice, detaching."""

from __future__ import annotations

import re

from textual.widgets import OptionList

from tests.fake_engine import FakeEngine
from assistant.tui.screens.attach import AttachScreen

from tests.tui_helpers import (AUDIT, LARGE, NOTES, SIZE, SMALL, app_with, clear, composer, notifications, palette,
                               sync, toast_texts, type_draft, wait_files, wait_for, wait_idle, write)


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
async def test_attaching_a_file_twice_says_so_and_attaches_it_once(store, tmp_path):
    notes = write(tmp_path, "notes.md", NOTES)
    app = app_with(FakeEngine(), store, files=[str(notes)])
    async with app.run_test(size=LARGE) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.documents)
        app.clear_notifications()
        app.chat.attach_paths([str(notes)])
        await pilot.pause()
        (note,) = list(notifications(app))
        assert note.severity == "warning" and "notes.md is already attached" in note.message
        # Two reads of the same new file in flight: one is attached, the other is reported.
        other = write(tmp_path, "other.md", NOTES.replace("widgets", "gadgets"))
        app.clear_notifications()
        app.chat.attach_paths([str(other), str(other)])
        await wait_for(pilot, lambda: len(app.conversation.documents) == 2 and not app.chat.files.reading)
        await pilot.pause()
        assert any("other.md is already attached" in m for m in toast_texts(app))
        assert sum("other.md" in m and "tokens" in m for m in toast_texts(app)) == 1
        assert [d.name for d in app.conversation.documents] == ["notes.md", "other.md"]
        assert app.chat.query_one("#files", OptionList).option_count == 2
    assert [f.name for f in store.files(app.conversation.session_id)] == ["notes.md", "other.md"]


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
        await submit_path(pilot, dialog, folder / "missing.md")
        assert app.screen is dialog and error.display and "No such file" in str(error.render())
        path.value = f"{folder}/"  # a folder's files are listed, to pick one (Enter would attach the folder)
        path.cursor_position = len(path.value)
        await pilot.pause(0.2)
        assert candidates.display and candidates.option_count == 3
        # Typing narrows the list; Tab completes what the candidates share, not the first
        # of them; Down reaches them, Enter takes one.
        path.value = f"{folder}/no"
        path.cursor_position = len(path.value)
        await pilot.pause(0.2)
        assert not error.display
        assert [str(candidates.get_option_at_index(i).prompt) for i in range(candidates.option_count)] == [
            "notes-old.md", "notes.md"]
        await pilot.press("tab")
        assert path.value == f"{folder}/notes" and path.has_focus
        await pilot.pause(0.2)
        await pilot.press("down")
        assert candidates.has_focus and candidates.highlighted == 0
        await pilot.press("down", "up", "up")  # up from the first candidate: back to the input
        assert path.has_focus and path.value == f"{folder}/notes"
        await pilot.press("down", "enter")
        assert path.has_focus and path.value == f"{folder}/notes-old.md"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.conversation.documents, what="the file to load")
        assert app.screen is app.chat and app.conversation.documents[0].name == "notes-old.md"


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
    assert complete_path(f"{base}/") is None  # notes.md and reports/ share nothing (.hidden is skipped)
    (tmp_path / "notes-old.md").write_text("x")
    assert complete_path(f"{base}/n") == f"{base}/notes"  # what the matches share, not the first
    assert complete_path(f"{base}/notes") is None and complete_path(f"{base}/notes-") == f"{base}/notes-old.md"
    assert complete_path(f"{base}/missing/x") is None and complete_path("") is None


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


# -- nothing heavy on the UI thread ---------------------------------------------------------


@sync
async def test_attaching_a_50_mb_file_and_clearing_leave_the_ui_thread_free(store, tmp_path, monkeypatch):
    """The file is read and counted (seconds) and Clear records it again in workers: the UI
    thread never spends more than 100 ms of its own CPU time between two heartbeats 10 ms
    apart. CPU time (time.thread_time), not wall-clock, so a loaded machine does not fail it;
    and without the garbage collector's passes, which land on whichever thread allocates
    when one is due (a full pass costs 80-170 ms here with torch imported), while a frame of
    the app at this size costs 10-30 ms."""
    import gc
    import threading
    import time

    from assistant.session import Conversation

    # The garbage of the tests before this one is collected now, so that fewer passes fall
    # in the measurement.
    gc.collect()

    big = tmp_path / "big.log"
    line = "2024-05-01 12:00:00 INFO the cooling unit in hall 3 reported 21.5 degrees and no fault\n"
    with big.open("w") as out:
        out.write(line * (49 * 2**20 // len(line)))  # just under the 50 MB load limit: loaded and counted
    threads: dict[str, int] = {}
    for name in ("add_files", "clear"):
        real = getattr(Conversation, name)

        def traced(self, *args, _real=real, _name=name, **kwargs):
            threads[_name] = threading.get_ident()
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Conversation, name, traced)
    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        ui_thread = threading.get_ident()
        collecting: dict[str, float] = {"in_gc": 0.0}  # the UI thread's CPU time in GC passes so far

        def count_gc(phase: str, info: dict) -> None:
            if threading.get_ident() == ui_thread:
                collecting[phase] = time.thread_time()
                if phase == "stop" and "start" in collecting:
                    collecting["in_gc"] += collecting["stop"] - collecting["start"]

        gc.callbacks.append(count_gc)
        # (UI thread CPU time outside GC passes, wall-clock) at each heartbeat
        beats: list[tuple[float, float]] = []
        heartbeat = app.set_interval(0.01, lambda: beats.append((time.thread_time() - collecting["in_gc"],
                                                                 time.perf_counter())))
        await wait_for(pilot, lambda: len(beats) >= 3)  # beating before the attach, so it is measured
        app.chat.attach_paths([str(big)])
        await type_draft(pilot, "typed while it loads")
        await wait_files(pilot, app, timeout=180)
        await clear(pilot, app)
        await pilot.pause(0.1)
        heartbeat.stop()
        gc.callbacks.remove(count_gc)
        assert composer(app).text == "typed while it loads"
        assert [d.name for d in app.conversation.documents] == ["big.log"]
    assert threads["add_files"] != ui_thread and threads["clear"] != ui_thread
    cpu = max(b[0] - a[0] for a, b in zip(beats, beats[1:]))
    wall = max(b[1] - a[1] for a, b in zip(beats, beats[1:]))
    print(f"longest UI-thread stall: {cpu * 1000:.0f} ms of CPU outside GC, {wall * 1000:.0f} ms wall-clock "
          f"({len(beats)} heartbeats; {collecting['in_gc'] * 1000:.0f} ms in GC passes on the UI thread)")
    assert len(beats) > 50 and cpu <= 0.1


# -- a file over the load limit ---------------------------------------------------------------


@sync
async def test_a_file_over_the_load_limit_is_listed_to_summarize_not_to_ask_about(store, tmp_path, monkeypatch):
    monkeypatch.setattr("assistant.documents.large.DEFAULT_MAX_BYTES", 4096)  # stands in for 50 MB
    log = write(tmp_path, "huge.log", AUDIT)  # about 10 KB
    app = app_with(FakeEngine(), store, files=[str(log)])
    async with app.run_test(size=LARGE) as pilot:
        await wait_idle(pilot, app)
        await wait_for(pilot, lambda: app.conversation.large_files and not app.chat.files.reading,
                       what="the large file")
        await pilot.pause()
        assert app.conversation.documents == []
        files = app.chat.query_one("#files", OptionList)
        assert files.option_count == 1
        assert re.fullmatch(r"huge\.log  \d+ KB \^S only", str(files.get_option_at_index(0).prompt))
        assert any("huge.log" in t and "too large to ask about" in t for t in toast_texts(app))
        assert any(t == "huge.log: Ctrl+S summarizes it" for t in toast_texts(app))


@sync
async def test_a_file_name_that_is_not_utf8_is_attached_shown_escaped_and_asked_about(store, tmp_path):
    """Such a name once brought up the app's crash screen (UnicodeEncodeError in the store)."""
    import os

    raw = os.fsencode(tmp_path) + b"/caf\xe9.md"
    with open(raw, "w") as f:
        f.write(NOTES)
    app = app_with(FakeEngine(default_reply="Widgets [1]."), store)
    async with app.run_test(size=LARGE) as pilot:
        await wait_idle(pilot, app)
        app.chat.attach_paths([os.fsdecode(raw)])
        await wait_files(pilot, app)
        assert [d.name for d in app.conversation.documents] == ["caf\\xe9.md"]
        assert "caf\\xe9.md" in str(app.chat.query_one("#files").get_option_at_index(0).prompt)
        await type_draft(pilot, "What left the warehouse?")
        await pilot.press("enter")
        await wait_idle(pilot, app)
        (session,) = store.list_sessions()
        (attached,) = store.files(session.id)
        assert os.fsencode(attached.path) == raw
        assert [m.role for m in store.messages(session.id)] == ["user", "assistant"]


@sync
async def test_the_sidebar_fits_each_file_with_its_tokens_and_marks_a_missing_one(store, tmp_path):
    long = write(tmp_path, "quarterly-report-2024.md", NOTES)
    short = write(tmp_path, "a.md", "A short note.")
    app = app_with(FakeEngine(), store, files=[str(long), str(short)])
    async with app.run_test(size=SIZE) as pilot:  # a 22-column sidebar
        await wait_idle(pilot, app)
        await wait_files(pilot, app, 2)
        files = app.chat.query_one("#files", OptionList)
        tokens = {f.name: f.n_tokens for f in app.conversation.files()}

        def rows() -> list[str]:
            return [str(files.get_option_at_index(i).prompt) for i in range(files.option_count)]

        width = files.scrollable_content_region.width
        first, second = rows()
        # The name gives way (its end kept), the count is whole, and the row fits the list.
        assert first.endswith(f"24.md  {tokens['quarterly-report-2024.md']} tok") and "…" in first
        assert first.startswith("quart") and len(first) <= width
        assert second == f"a.md  {tokens['a.md']} tok"
        short.unlink()
        app.chat.refresh_sidebar()
        await pilot.pause()
        assert rows()[1] == "a.md  missing"
        assert rows()[0] == first


def test_the_files_line_fits_its_width_with_a_count_of_the_rest():
    from assistant.tui.widgets.attached import files_line

    names = ["notes.md", "cases/", "audit-2024.pdf", "b.txt"]
    assert files_line(names, 80) == "Files: notes.md · cases/ · audit-2024.pdf · b.txt"
    assert files_line(names, 40) == "Files: notes.md · cases/ +2 more"
    assert files_line(names, 23) == "Files: notes.md +3 more"
    assert files_line(names, 20) == "Files: note… +3 more"
    assert files_line(["a-very-long-file-name.md"], 20) == "Files: a-very-long-…"
    assert all(len(files_line(names, w)) <= w for w in range(22, 80))
    assert files_line([], 80) == ""


@sync
async def test_at_80_columns_the_attached_files_show_above_the_input(store, tmp_path):
    from assistant.tui.widgets.attached import AttachedLine

    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SMALL) as pilot:  # no sidebar
        await wait_idle(pilot, app)
        line = app.chat.query_one(AttachedLine)
        assert not line.display  # nothing attached: no line, and the input does not speak of files
        assert "files" not in composer(app).placeholder
        names = [f"report-{i}.md" for i in range(8)]
        app.chat.attach_paths([str(write(tmp_path, name, NOTES)) for name in names])
        await wait_files(pilot, app, 8)
        await pilot.pause()
        assert line.display and line.region.bottom == composer(app).region.y  # just above the input
        shown = str(line.render())
        assert shown.startswith("Files: report-") and re.search(r" \+\d more$", shown)
        assert len(shown) <= line.region.width
        assert "Ask about your files" in composer(app).placeholder
        await pilot.press("f2")  # the sidebar lists them: the line goes
        await pilot.pause()
        assert not line.display


async def submit_path(pilot, dialog, path) -> None:
    """Type `path` in the dialog's input (set at once) and press Enter."""
    box = dialog.query_one("#attach-path")
    box.value = str(path)
    box.cursor_position = len(box.value)
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()


@sync
async def test_a_binary_or_large_file_is_answered_in_the_dialog(store, tmp_path, monkeypatch):
    """What used to show only once the dialog had closed, as a toast saying "check the
    path", shows in the dialog: binary data is refused there; a text file over the load
    limit is said to be for summaries only, and a second Enter attaches it so."""
    monkeypatch.setattr("assistant.documents.large.DEFAULT_MAX_BYTES", 4096)  # stands in for 50 MB
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    log = write(tmp_path, "huge.log", AUDIT)  # about 10 KB
    page = write(tmp_path, "huge.html", "<html><body>" + AUDIT + "</body></html>")  # HTML is not read in parts
    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("ctrl+o")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, AttachScreen) and app.screen)
        error = dialog.query_one("#path-error")
        await submit_path(pilot, dialog, binary)
        assert app.screen is dialog and error.display
        assert "data.bin looks like a binary file" in str(error.render())
        await submit_path(pilot, dialog, page)
        assert app.screen is dialog and "too large" in str(error.render())
        await submit_path(pilot, dialog, log)
        assert app.screen is dialog
        shown = str(error.render())
        assert "huge.log is too large to ask about" in shown and "Enter again attaches it" in shown
        assert error.has_class("-note")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.conversation.large_files and not app.chat.files.reading,
                       what="the large file")
        assert app.screen is app.chat and app.conversation.documents == []
        assert not [n for n in notifications(app) if n.severity == "error"]


def test_first_look_reads_only_the_head(tmp_path, monkeypatch):
    """The dialog's check reads 64 KiB at most: a text file whose binary part comes later
    passes it (its reader says so), a binary head does not; a file over the limit is
    reported for summaries, whatever its size."""
    from assistant.documents import first_look
    from models.errors import XGenError

    monkeypatch.setattr("assistant.documents.large.DEFAULT_MAX_BYTES", 4096)
    late = tmp_path / "late.txt"
    late.write_bytes(b"plain text line\n" * 5000 + b"\0\1\2" * 100)
    head = tmp_path / "head.txt"
    head.write_bytes(b"\0\1\2\3" * 100 + b"plain text line\n")
    small = write(tmp_path, "small.md", "# Notes\n\nshort\n")
    assert first_look(late) is True and first_look(small) is False and first_look(tmp_path / "missing") is False
    try:
        first_look(head)
    except XGenError as exc:
        assert "head.txt looks like a binary file" in str(exc)
    else:
        raise AssertionError("a binary head passed")
