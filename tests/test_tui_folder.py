"""Folders in the app: attached with Ctrl+O, counted in the sidebar, indexed in a worker
with progress (Esc stops it), searched by questions with citations that open, and a
folder of 10,000 files browsed and filtered without lag."""

from __future__ import annotations

import threading
import time

from textual.widgets import Label, OptionList

from assistant.tui.screens.attach import AttachScreen
from assistant.tui.screens.folder import FolderScreen
from assistant.tui.screens.passage import PassageScreen
from assistant.tui.widgets.messages import CitationButton
from tests.fake_engine import FakeEngine
from tests.tui_helpers import (LARGE, SMALL, app_with, passage_text, replies, send, sync, toast_texts, wait_files,
                               wait_for, wait_idle)

CASE = {
    "intake.txt": "Mr Smith called on 3 March about the flooded basement.\n",
    "letters/insurer.md": "# Letter\n\nThe insurer refused the claim on 12 April for late notice.\n",
    "notes/visit.txt": "The surveyor found the drain pipe cracked under the garage.\n",
    ".private/diary.txt": "Hidden notes the index leaves out.\n",
}


def case_folder(root):
    folder = root / "smith"
    for rel, text in CASE.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def file_rows(app) -> list[str]:
    files = app.chat.query_one("#files", OptionList)
    return [str(files.get_option_at_index(i).prompt) for i in range(files.option_count)]


@sync
async def test_ctrl_o_attaches_a_folder_whose_passages_answer_with_citations_that_open(store, tmp_path):
    folder = case_folder(tmp_path)
    engine = FakeEngine(["It was refused on 12 April [2]."])
    app = app_with(engine, store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("ctrl+o")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, AttachScreen) and app.screen)
        path = dialog.query_one("#attach-path")
        path.value = str(folder)
        path.cursor_position = len(path.value)
        await pilot.press("enter")
        await wait_files(pilot, app)
        assert [(d.name, d.kind) for d in app.conversation.documents] == [("smith", "folder")]
        assert file_rows(app) == ["smith/  3 files"]  # the hidden folder is left out
        assert "smith/: 3 files; questions search them" in toast_texts(app)
        await send(pilot, "When did the insurer refuse the claim?")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy, what="the answer")
        await pilot.pause()
        prompt = engine.prompt_texts()[0]
        assert "smith/letters/insurer.md:1-3" in prompt and "Hidden notes" not in prompt
        await pilot.click(CitationButton)
        await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen), what="the passage")
        assert "The insurer refused the claim on 12 April" in passage_text(app.screen)


@sync
async def test_the_tree_puts_a_folder_in_the_input_and_the_model_dialog_still_refuses_folders(store, tmp_path):
    from textual.widgets import DirectoryTree

    from assistant.tui.screens.attach import ModelFileScreen

    folder = case_folder(tmp_path)
    app = app_with(FakeEngine(), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        dialog = AttachScreen(tmp_path)
        await app.push_screen(dialog)
        await pilot.pause()
        dialog.post_message(DirectoryTree.DirectorySelected(dialog.query_one(DirectoryTree).root, folder))
        await pilot.pause()
        assert dialog.query_one("#attach-path").value == f"{folder}/"
        assert dialog.problem(folder) is None
        await pilot.press("escape")
        model_dialog = ModelFileScreen(tmp_path)
        await app.push_screen(model_dialog)
        await pilot.pause()
        assert "smith is a folder" in model_dialog.problem(folder)


@sync
async def test_indexing_shows_progress_in_the_sidebar_and_esc_stops_it(store, tmp_path, monkeypatch):
    """Each file takes 0.3 s to read here, so the run is caught half-way; what was indexed
    is kept and searched, and the next question goes on with the rest."""
    from assistant.library import job

    folder = tmp_path / "slow"
    folder.mkdir()
    for i in range(8):
        (folder / f"f{i}.txt").write_text(f"File {i} mentions the harbour budget.\n")
    real = job.extract
    reading = threading.Event()

    def slow_extract(task, *args, **kwargs):
        reading.set()
        time.sleep(0.3)
        return real(task, *args, **kwargs)

    monkeypatch.setattr(job, "extract", slow_extract)
    app = app_with(FakeEngine(["Noted [1]."]), store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        app.chat.attach_paths([str(folder)])
        hint = app.chat.query_one("#files-hint", Label)
        await wait_for(pilot, lambda: str(hint.render()).startswith("indexing "), what="the progress")
        assert str(hint.render()).endswith("/8")
        assert app.chat.check_action("stop", ()) is True  # Esc is offered while it indexes
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.files.reading, what="the stop")
        await pilot.pause()
        assert any(t.startswith("Indexing stopped") for t in toast_texts(app))
        (row,) = file_rows(app)
        indexed = int(row.split()[1])
        assert row == f"slow/  {indexed} file{'' if indexed == 1 else 's'}" and 0 < indexed < 8
        assert str(hint.render()) == "Enter/^S: summary"
        await send(pilot, "What about the harbour budget?")  # goes on with the rest first
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy, timeout=30, what="the answer")
        await pilot.pause()
        assert file_rows(app) == ["slow/  8 files"]


@sync
async def test_a_folder_still_indexing_when_a_reply_ends_is_named_as_the_activity(store, tmp_path, monkeypatch):
    """A folder attached mid-reply is read alongside it; when the reply ends first, the
    status says the files are still being read (it said nothing), and clears when done."""
    from assistant.library import job

    folder = tmp_path / "held"
    folder.mkdir()
    (folder / "a.txt").write_text("The harbour budget rose.\n")
    real = job.extract
    gate, reading = threading.Event(), threading.Event()

    def held_extract(task, *args, **kwargs):
        reading.set()
        gate.wait(30)
        return real(task, *args, **kwargs)

    class HeldReply(FakeEngine):
        """Replies once let go: the folder is attached while the reply runs, however
        slowly the test's loop polls on a loaded machine."""

        def __init__(self):
            super().__init__(["One two three."])
            self.replying, self.go = threading.Event(), threading.Event()

        def generate(self, prompt_ids, settings, **kwargs):
            self.replying.set()
            self.go.wait(30)
            return super().generate(prompt_ids, settings, **kwargs)

    monkeypatch.setattr(job, "extract", held_extract)
    engine = HeldReply()
    app = app_with(engine, store)
    async with app.run_test(size=SMALL) as pilot:
        await wait_idle(pilot, app)
        await send(pilot, "Hello?")
        await wait_for(pilot, engine.replying.is_set, what="the reply to start")
        app.chat.attach_paths([str(folder)])
        await wait_for(pilot, reading.is_set, what="the folder to be read")
        await wait_for(pilot, lambda: app.chat.busy, what="the reply shown as running")
        assert app.chat.activity != "reading files…"  # the reply's activity shows while it runs
        engine.go.set()
        await wait_for(pilot, lambda: not app.chat.busy, timeout=20, what="the reply to end")
        assert app.chat.files.reading and app.chat.activity == "reading files…"
        gate.set()
        await wait_for(pilot, lambda: not app.chat.files.reading, timeout=20, what="the folder")
        await wait_for(pilot, lambda: app.chat.activity == "", what="the activity to clear")
        assert file_rows(app) == ["held/  1 file"]


async def keystroke_costs(pilot, screen, keys: str) -> list[float]:
    """UI-thread CPU seconds of each key typed into the filter (CPU, not wall-clock: a
    loaded machine does not change it much)."""
    screen.query_one("#folder-filter").focus()
    costs = []
    for key in keys:
        started = time.thread_time()
        await pilot.press({" ": "space", "-": "minus"}.get(key, key))
        costs.append(time.thread_time() - started)
    return costs


@sync
async def test_a_folder_of_10000_files_is_browsed_and_filtered_without_lag(store, tmp_path):
    """A keystroke in the filter costs the UI thread about what it costs with 100 files
    (medians side by side in one run), and Enter summarizes the file chosen."""
    from statistics import median

    from assistant.library import update_library

    folder = tmp_path / "archive"
    for d in range(100):
        sub = folder / f"box{d:02d}"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"letter-{d:02d}-{i:03d}.txt").write_text(f"Letter {i} of box {d}.\n")
    assert update_library([folder]).files == 10_000
    engine = FakeEngine(["A short letter."])
    app = app_with(engine, store, files=[str(folder)])
    keys = "box42 letter-42-07"
    async with app.run_test(size=LARGE) as pilot:
        await wait_idle(pilot, app)
        await wait_files(pilot, app, timeout=60)
        assert file_rows(app) == ["archive/  10.0k files"]
        files = app.conversation.folder_files(str(folder))
        small = FolderScreen("archive", [f for f in files if "/box42/" in f[0]])  # 100 files
        await app.push_screen(small)
        await pilot.pause()
        few = await keystroke_costs(pilot, small, keys)
        small.dismiss(None)
        await pilot.pause()
        app.chat.summarize(str(folder))  # Enter on the folder's row
        screen = await wait_for(pilot, lambda: isinstance(app.screen, FolderScreen) and app.screen is not small
                                and app.screen.query("#folder-files") and app.screen)
        await pilot.pause()
        listed = screen.query_one("#folder-files", OptionList)
        assert "10,000 matches; the first 300 are listed" in str(screen.query_one("#folder-count", Label).render())
        listed.focus()
        await pilot.press("pagedown", "pagedown", "pagedown")
        assert listed.highlighted and listed.highlighted > 20  # it scrolls
        many = await keystroke_costs(pilot, screen, keys)
        await pilot.pause()
        assert [str(listed.get_option_at_index(i).prompt) for i in range(listed.option_count)] == [
            f"archive/box42/letter-42-07{i}.txt" for i in range(10)]
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: replies(app) and not app.chat.busy, timeout=30, what="the summary")
    print(f"keystroke, median ms of UI-thread CPU: 100 files {median(few) * 1000:.0f}, "
          f"10,000 files {median(many) * 1000:.0f} (worst {max(many) * 1000:.0f})")
    assert median(many) <= 1.5 * median(few) + 0.01
    assert "Letter 71 of box 42." in engine.prompt_texts()[-1]
