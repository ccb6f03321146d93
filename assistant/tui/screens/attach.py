"""Choose a file by path: type it (Tab completes as far as the matches agree, the
candidates are listed under the input, Down reaches them) or pick it in the tree. A
wrong path keeps the dialog open and says why.

AttachScreen picks a document or a folder to attach (a folder picked in the tree is put
in the input, so Enter takes it); ModelFileScreen a .gguf model to load."""

from __future__ import annotations

import os
from pathlib import Path

from textual import events, on
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import DirectoryTree, Input, Label, OptionList
from textual.widgets.option_list import Option

from assistant.files import summary_only_note
from assistant.session import absolute
from assistant.tui.text import shown
from models.errors import XGenError

MAX_CANDIDATES = 50


def _entries(value: str, suffixes: tuple[str, ...] = ()) -> tuple[str, str, list[tuple[str, bool]]]:
    """(head, separator, [(name, is folder)]) of what `value`'s last part may complete to:
    hidden entries only when the part starts with a dot; with `suffixes`, folders and
    files with one of them."""
    head, sep, prefix = value.rpartition(os.sep)
    folder = Path(head + sep or ".").expanduser()
    try:
        with os.scandir(folder) as scan:
            found = []
            for entry in scan:
                name = entry.name
                if not name.startswith(prefix) or (name.startswith(".") and not prefix.startswith(".")):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    continue
                if suffixes and not is_dir and not name.lower().endswith(suffixes):
                    continue
                found.append((name, is_dir))
    except OSError:
        return head, sep, []
    return head, sep, sorted(found)


def complete_path(value: str, suffixes: tuple[str, ...] = ()) -> str | None:
    """`value` with its last part completed from what is on disk, as a shell does: the
    one match in full (a folder gets a trailing separator), or what several matches
    share; None when that adds nothing. Hidden entries only when the part starts with a dot."""
    if not value:
        return None
    head, sep, names = _entries(value, suffixes)
    if not names:
        return None
    if len(names) == 1:
        name, is_dir = names[0]
        completed = head + sep + name + (os.sep if is_dir else "")
    else:
        completed = head + sep + os.path.commonprefix([name for name, _ in names])
    return completed if len(completed) > len(value) else None


def path_candidates(value: str, suffixes: tuple[str, ...] = ()) -> list[str]:
    """The completions of `value` (folders end with a separator), at most MAX_CANDIDATES."""
    if not value:
        return []
    head, sep, names = _entries(value, suffixes)
    return [head + sep + name + (os.sep if is_dir else "") for name, is_dir in names[:MAX_CANDIDATES]]


class PathSuggester(Suggester):
    def __init__(self, suffixes: tuple[str, ...] = ()) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.suffixes = suffixes

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value, self.suffixes)


class PathInput(Input):
    """An Input whose Tab takes the suggested completion, the one match or what the matches
    share (and moves on when there is nothing more)."""

    BINDINGS = [Binding("tab", "complete", "Complete", show=False)]

    def __init__(self, value: str | None = None, *, suffixes: tuple[str, ...] = (), **kwargs):
        super().__init__(value, suggester=PathSuggester(suffixes), **kwargs)
        self.suffixes = suffixes

    def action_complete(self) -> None:
        # The completion the suggester shows, computed again (a quick listing of a folder).
        # Nothing more to complete: on to the next widget, the candidates when listed.
        suggestion = complete_path(self.value, self.suffixes) if self.cursor_at_end else None
        if suggestion:
            self.value = suggestion
            self.cursor_position = len(suggestion)
        else:
            self.screen.focus_next()


class FileTree(DirectoryTree):
    def __init__(self, path, *, suffixes: tuple[str, ...] = (), **kwargs):
        super().__init__(path, **kwargs)
        self.suffixes = suffixes

    def filter_paths(self, paths):
        return [p for p in paths if not p.name.startswith(".")
                and (not self.suffixes or p.name.lower().endswith(self.suffixes) or p.is_dir())]


class PathScreen(ModalScreen[str | None]):
    """Dismisses with the path typed or picked once it names a file (of the right kind),
    or None on Esc."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    title_text = "Choose a file"
    placeholder = "Path of a file (Tab completes)"
    hint = "Enter chooses · Tab completes · Esc cancels"
    suffixes: tuple[str, ...] = ()
    folders = False  # whether a folder can be chosen
    dialog_id = "path-dialog"

    def __init__(self, folder: Path | None = None):
        super().__init__()
        self.folder = folder or Path.cwd()
        self._error_for: str | None = None  # the value the error shown is about

    def compose(self):
        with Vertical(classes="dialog path-dialog", id=self.dialog_id):
            yield Label(self.title_text, classes="dialog-title")
            yield PathInput(placeholder=self.placeholder, suffixes=self.suffixes, id="attach-path")
            yield OptionList(id="path-candidates", compact=True)
            yield Label("", id="path-error")
            yield FileTree(self.folder, suffixes=self.suffixes, id="attach-tree")
            yield Label(self.hint, classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#path-candidates").display = False
        self.query_one("#path-error").display = False
        self.query_one("#attach-path").focus()

    # -- what is typed -----------------------------------------------------------------------

    @on(Input.Changed, "#attach-path")
    def typing(self, event: Input.Changed) -> None:
        if event.value != self._error_for:
            self.show_error("")
        candidates = self.query_one("#path-candidates", OptionList)
        found = path_candidates(event.value, self.suffixes)
        candidates.clear_options()
        candidates.add_options([Option(shown(Path(c).name + (os.sep if c.endswith(os.sep) else "")), id=c)
                                for c in found])
        # Not when the only candidate is what is typed (nothing more to complete).
        candidates.display = bool(found) and found != [event.value]

    def on_key(self, event: events.Key) -> None:
        # Down from the input reaches the candidates listed under it; Up from the first
        # candidate goes back to the input.
        candidates = self.query_one("#path-candidates", OptionList)
        path_input = self.query_one("#attach-path", PathInput)
        if event.key == "down" and path_input.has_focus and candidates.display and candidates.option_count:
            candidates.focus()
            candidates.highlighted = 0
        elif event.key == "up" and candidates.has_focus and candidates.highlighted in (0, None):
            path_input.focus()
        else:
            return
        event.stop()
        event.prevent_default()

    @on(OptionList.OptionSelected, "#path-candidates")
    def candidate_chosen(self, event: OptionList.OptionSelected) -> None:
        path_input = self.query_one("#attach-path", PathInput)
        path_input.value = event.option.id or path_input.value
        path_input.cursor_position = len(path_input.value)
        path_input.focus()

    def show_error(self, message: str) -> None:
        error = self.query_one("#path-error", Label)
        error.update(shown(message))
        error.display = bool(message)

    def problem(self, path: Path) -> str | None:
        """Why `path` cannot be chosen, or None."""
        if path.is_dir():
            if self.folders and os.access(path, os.R_OK | os.X_OK):
                return None
            if self.folders:
                return f"{path.name or path} cannot be read (permission denied)"
            return f"{path.name or path} is a folder: choose one of its files"
        if not path.exists():
            return f"No such file: {path}"
        if self.suffixes and not path.name.lower().endswith(self.suffixes):
            return f"{path.name} is not a {' or '.join(self.suffixes)} file"
        if not os.access(path, os.R_OK):
            return f"{path.name} cannot be read (permission denied)"
        return None

    def choose(self, typed: str) -> None:
        path = absolute(typed)
        problem = self.problem(path)
        if problem is None:
            self.dismiss(typed)
        else:
            self.refuse(typed, problem)

    def refuse(self, typed: str, problem: str, *, note: bool = False) -> None:
        """Keep the dialog open on what was typed and say why (`note`: not an error, a step)."""
        path_input = self.query_one("#attach-path", PathInput)
        if absolute(typed).is_dir():  # continue from there: its files are listed under the input
            path_input.value = typed.rstrip(os.sep) + os.sep
            path_input.cursor_position = len(path_input.value)
        self._error_for = path_input.value
        self.show_error(problem)
        self.query_one("#path-error").set_class(note, "-note")
        path_input.focus()

    @on(Input.Submitted, "#attach-path")
    def typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.choose(event.value.strip())

    @on(DirectoryTree.FileSelected)
    def picked(self, event: DirectoryTree.FileSelected) -> None:
        self.choose(str(event.path))

    @on(DirectoryTree.DirectorySelected)
    def folder_picked(self, event: DirectoryTree.DirectorySelected) -> None:
        # The tree opens the folder; the input takes its path, so Enter attaches the folder.
        if self.folders:
            path_input = self.query_one("#attach-path", PathInput)
            path_input.value = str(event.path).rstrip(os.sep) + os.sep
            path_input.cursor_position = len(path_input.value)


class AttachScreen(PathScreen):
    """Also says at once, from a file's first bytes, what would only show once the dialog
    is closed: binary data (refused), a text file over the load limit (attached, after a
    second Enter, to be summarized in parts: it cannot be asked about)."""

    title_text = "Attach a file or a folder"
    placeholder = "Path of a file or folder (Tab completes)"
    hint = "Enter attaches · Tab completes · Esc cancels"
    folders = True
    dialog_id = "attach-dialog"

    def __init__(self, folder: Path | None = None):
        super().__init__(folder)
        self._noted: str | None = None  # the large file whose note was shown: Enter again attaches it

    def choose(self, typed: str) -> None:
        path = absolute(typed)
        if self.problem(path) is None and not path.is_dir():
            try:
                note = summary_only_note(path)
            except XGenError as exc:
                self.refuse(typed, str(exc))
                return
            if note and self._noted != str(path):
                self._noted = str(path)
                self.refuse(typed, f"{note}. Enter again attaches it to summarize (Ctrl+S).", note=True)
                return
        super().choose(typed)


class ModelFileScreen(PathScreen):
    title_text = "Load a model file (.gguf)"
    placeholder = "Path of a .gguf file (Tab completes)"
    hint = "Enter loads it · Tab completes · Esc cancels"
    suffixes = (".gguf",)
    dialog_id = "model-dialog"
