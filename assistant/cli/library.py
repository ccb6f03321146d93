"""`xgen index`, `xgen search` and `xgen library list|forget`: faces over assistant/library.

The jobs run in the core and report events; this module only prints them: progress on
stderr (rewritten in place), results on stdout, as one summary line or as JSON.
"""

from __future__ import annotations

import json
import time

import click

from assistant.cli.interrupt import STOPPED_EXIT, run_interruptible
from assistant.cli.output import StatusLine, write_stdout
from models.errors import XGenError

SHOWN_SKIPS = 10  # skipped files listed on stderr after a run (all of them with --json)


def _size(n: float) -> str:
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 else f"{n / 1024:,.0f} KB"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class IndexPrinter:
    """Progress events as one stderr line, rewritten at most ten times a second; shown
    only once the job has run `after` seconds (`ask` on files that changed little shows
    no flicker)."""

    def __init__(self, after: float = 0.0):
        self.last = 0.0
        self.after = after
        self.first: float | None = None
        self.line = StatusLine()

    def __call__(self, event) -> None:
        from assistant.library import Progress, Scanning, shown

        if not isinstance(event, (Progress, Scanning)):
            return
        now = time.monotonic()
        self.first = self.first if self.first is not None else now
        if now - self.first < self.after:
            return
        if now - self.last < 0.1 and not (isinstance(event, Progress) and event.files_done == event.files_total):
            return
        self.last = now
        if isinstance(event, Scanning):
            line = f"scanning {shown(event.root)}: {event.files:,} files"
        else:
            rate = event.bytes_done / event.elapsed if event.elapsed > 0 else 0.0
            left = (event.bytes_total - event.bytes_done) / rate if rate > 0 else None
            line = (f"indexing {event.files_done:,}/{event.files_total:,} files, {_size(event.bytes_done)}"
                    f"/{_size(event.bytes_total)}, {_size(rate)}/s"
                    + (f", {_duration(left)} left" if left is not None else "") + f": {shown(event.current)}")
        self.line.show(line[:160])

    def clear(self) -> None:
        self.line.clear()


def _update(paths, **options):
    """Run update_library with progress on stderr; (report, stopped)."""
    from assistant.library import update_library

    printer = IndexPrinter()
    try:
        report, stopped = run_interruptible(
            lambda stop: update_library(paths, on_event=printer, stop=stop, **options),
            notice="stopping after the files being read; what is indexed is kept")
    finally:
        printer.clear()
    return report, stopped


@click.command("index")
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.option("--hidden", is_flag=True, help="Read hidden files and folders too.")
@click.option("--no-ignore", is_flag=True, help="Read what .gitignore and .ignore files exclude.")
@click.option("--rebuild", is_flag=True, help="Delete the index and build it anew (a damaged index).")
def index(paths, as_json, hidden, no_ignore, rebuild) -> None:
    """Index folders (or files) for `xgen search` and `xgen ask`, or bring them up to date.

    Unchanged files are not read again; Ctrl+C keeps what was indexed and the same
    command goes on. Hidden files and what .gitignore/.ignore files exclude are left out
    unless --hidden/--no-ignore are given (`search` and `ask` keep the options of the
    last `xgen index`).
    """
    from assistant.library import shown

    report, stopped = _update(paths, hidden=hidden, no_ignore=no_ignore, rebuild=rebuild)
    if as_json:
        write_stdout(json.dumps(report.as_json()) + "\n")
    else:
        for s in report.skipped[:SHOWN_SKIPS]:
            click.echo(f"skipped {shown(s.path)}: {s.why}", err=True)
        if len(report.skipped) > SHOWN_SKIPS:
            click.echo(f"... and {len(report.skipped) - SHOWN_SKIPS:,} more skipped (--json lists them)", err=True)
        write_stdout(f"{report.indexed:,} indexed, {report.unchanged:,} unchanged, {report.removed:,} removed, "
                     f"{len(report.skipped):,} skipped; the library holds {report.files:,} files, "
                     f"{report.passages:,} passages, {_size(report.bytes)} ({report.seconds:.1f} s)\n")
    if stopped:
        click.echo("stopped: what was indexed is kept; run the same command to go on", err=True)
        raise SystemExit(STOPPED_EXIT)


@click.command("search")
@click.argument("paths", nargs=-1, required=True)
@click.option("-q", "--query", "text", required=True, help="What to look for, in your own words.")
@click.option("-n", "limit", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many passages.")
@click.option("--json", "as_json", is_flag=True, help="Print the passages as JSON.")
def search(paths, text, limit, as_json) -> None:
    """Search indexed folders (or files) with no model: ranked passages with file and lines.

    The folders are brought up to date first (indexed if they are new)."""
    from assistant.library import IndexDatabase, snippet
    from assistant.library import search as search_index
    from assistant.library.catalog import resolve
    from assistant.library.search import query_words

    if not query_words(text):
        raise XGenError("the question has no words to search for (only punctuation, or only words "
                        "such as 'the')")
    _, stopped = _update(paths)
    if stopped:
        raise SystemExit(STOPPED_EXIT)
    db = IndexDatabase(check=False)
    try:
        hits = search_index(db, text, limit=limit, within=[resolve(p) for p in paths])
    finally:
        db.close()
    if as_json:
        write_stdout(json.dumps({"hits": [h.as_json() for h in hits]}) + "\n")
        return
    if not hits:
        write_stdout("no passage matches\n")
        return
    words = query_words(text)
    for h in hits:
        write_stdout(f"{h.location()}  ({h.score:.2f})\n    {snippet(h.text, words)}\n")


@click.group("library")
def library() -> None:
    """The indexed folders: list them, or forget one."""


@library.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_command(as_json) -> None:
    """Each library: files, passages, size of its files, skipped files, last update."""
    from assistant.library import IndexDatabase, index_path, list_libraries, shown

    db = IndexDatabase(check=False)
    try:
        infos = list_libraries(db)
    finally:
        db.close()
    if as_json:
        write_stdout(json.dumps({"libraries": [i.as_json() for i in infos]}) + "\n")
        return
    if not infos:
        write_stdout("no libraries yet: `xgen index FOLDER` makes one\n")
        return
    for i in infos:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(i.updated_at)) if i.updated_at else "never finished"
        write_stdout(f"{shown(i.path)}  {i.files:,} files, {i.passages:,} passages, {_size(i.bytes)}, "
                     f"{i.skipped:,} skipped, updated {when}\n")
    path = index_path()
    on_disk = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    write_stdout(f"index: {path} ({_size(on_disk)} on disk)\n")


@library.command("forget")
@click.argument("path")
def forget_command(path) -> None:
    """Remove a library from the index (its files stay where they are)."""
    from assistant.library import IndexDatabase, forget, shown

    db = IndexDatabase(check=False)
    try:
        info = forget(db, path)
    finally:
        db.close()
    write_stdout(f"forgot {shown(info.path)}: {info.files:,} files, {info.passages:,} passages\n")
