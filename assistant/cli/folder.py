"""`xgen summarize FOLDER`: the folder job of the core (assistant/folder_summary.py), shown.

Progress on stderr (the index, then files done out of the total); each file's summary on
stdout as it is done, then the folder's, streamed. With --json, one JSON object at the
end. Ctrl+C keeps the files done (cached: the same command goes on from there).
"""

from __future__ import annotations

import json
import threading

import click

from assistant.cli.interrupt import STOPPED_EXIT, run_interruptible
from assistant.cli.options import remote_options
from assistant.cli.output import write_stdout
from assistant.cli.printer import EventPrinter
from assistant.store import Store


class FolderPrinter(EventPrinter):
    """Files done out of the total on stderr, each file's summary on stdout (not --json)."""

    def __init__(self, folder: str, quiet: bool):
        super().__init__(quiet)
        self.folder = folder
        self._lock = threading.RLock()
        self._headed = False

    def text(self, piece: str) -> None:
        # Only the folder's summary streams (the files' come whole, through file_done).
        if not self.quiet and not self._headed:
            click.echo(f"## {self.folder}: all its files\n")
            self._headed = True
        super().text(piece)

    def progress(self, stage: str, done: int, total: int) -> None:
        if stage == "files":
            with self._lock:
                self._line.show(f"summarized {done:,} of {total:,} files…", end="\n" if done == total else "")
            return
        super().progress(stage, done, total)

    def file_done(self, summary) -> None:
        if self.quiet:
            return
        with self._lock:
            self._line.clear()
            click.echo(f"## {summary.name}{' (cached)' if summary.cached else ''}\n\n{summary.summary}\n")


def summarize_folder_command(folder, form, settings, as_json, parallel, model_args, remote_timeout) -> None:
    from assistant.folder_summary import parallel_calls, summarize_folder
    from assistant.modelref import open_model

    printer = FolderPrinter(folder, quiet=as_json)
    with Store() as store, open_model(*model_args, remote=remote_options(remote_timeout)) as model:
        if model.note:
            click.echo(f"note: {model.note}", err=True)
        calls, note = parallel_calls(model, parallel)
        if note:
            click.echo(f"note: {note}", err=True)
        if not as_json:
            click.echo(f"summarizing {folder} ({calls} at a time)", err=True)

        def job(stop):
            return summarize_folder(store, model, folder, form, events=printer, stop=stop, parallel=calls,
                                    settings=settings, on_file=printer.file_done)

        result, interrupted = run_interruptible(job, notice="stopping; the files summarized are kept")
        printer.finished()
    for name, why in result.failed:
        click.echo(f"note: {name} was not summarized: {why}", err=True)
    if as_json:
        write_stdout(json.dumps(result.as_json(), indent=2) + "\n")
    elif result.summary:
        click.echo(f"({len(result.files)} files summarized; the folder's summary is above)", err=True)
    if interrupted or result.stopped:
        click.echo(f"stopped: {len(result.files)} of {result.total} files summarized are kept; the same "
                   "command goes on from there", err=True)
        raise SystemExit(STOPPED_EXIT)
