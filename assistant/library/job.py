"""Bring libraries up to date: walk, read what changed in worker processes, commit per file.

`update_library(paths)` is the one indexing job (`xgen index`, and later `ask` and the app
before they search). In three steps:

1. Walk each root (assistant/library/walk.py), a stat per file. A file whose size,
   mtime_ns and inode equal the indexed ones is not opened: when nothing changed, the
   whole run is this walk plus one indexed lookup per file.
2. Read the others in worker processes (extract.py), at most WINDOW_PER_WORKER files in
   flight per worker, so memory holds a few files' text whatever the folder's size. A few
   small files are read in this process instead (starting workers costs more).
3. Remove from the index the files the walk did not see: deleted, or now ignored. Only
   after a complete walk, and never under a folder that could not be listed.

Files are committed in groups of whole files (at most GROUP_BYTES, or what was read in
GROUP_SECONDS), each file's passages first and its fingerprint last: Ctrl+C loses only the
files in flight, `kill -9` at most those and the last second's group, and the same command
goes on from there. Two runs on one library never duplicate anything: a file's passages are
replaced (never appended) under its unique path, and a run that finds another already
committed the same content leaves it.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from assistant.library import catalog, names
from assistant.library.events import Done, Event, IndexReport, Progress, Scanning, Skipped
from assistant.library.extract import Outcome, Task, extract
from assistant.library.schema import IndexDatabase, add_passages, remove_index
from assistant.library.walk import Found, Skip, walk
from models.errors import XGenError

WINDOW_PER_WORKER = 2
INLINE_FILES = 8  # read in this process up to this many files...
INLINE_BYTES = 4 * 2**20  # ...of at most this many bytes in all
TASKS_PER_WORKER = 1000  # then a fresh worker (bounds leaks in readers; a start costs ~1.5 s)
GROUP_BYTES = 8 * 2**20  # files are written in groups of up to this many bytes...
GROUP_SECONDS = 1.0  # ...or of what was read in this long, whichever comes first
TASK_TIMEOUT = 600.0  # seconds one file may take before it is given up on for this run
_FINGERPRINT = "SELECT id, size, mtime_ns, inode, sha256, status, why FROM files WHERE path = ?"
_FINGERPRINTS = "SELECT path, id, size, mtime_ns, inode, sha256, status, why FROM files WHERE path"
LOOKUP_BATCH = 500  # files compared with the index per query (SQLite allows 32,766 parameters)


def update_library(paths: Iterable[str | bytes | os.PathLike], *, hidden: bool | None = None,
                   no_ignore: bool | None = None, on_event: Callable[[Event], None] | None = None,
                   stop: threading.Event | None = None, workers: int | None = None,
                   rebuild: bool = False, db: IndexDatabase | None = None) -> IndexReport:
    """Index `paths` (folders or files) or bring them up to date; returns what was done.

    `hidden`/`no_ignore` None keep what each library was indexed with (False for a new
    one). `on_event` receives Scanning, Progress, Skipped and finally Done; `stop` (set by
    Ctrl+C) ends the run after the files in flight, keeping what was committed. `rebuild`
    deletes the index first (the way out of a damaged or newer-version one). Raises
    XGenError with one line for what the user must fix (no such path, a damaged index, a
    full disk)."""
    started = time.monotonic()
    emit = on_event or (lambda event: None)
    stop = stop or threading.Event()
    targets = [catalog.resolve(p) for p in paths]
    if rebuild and db is None:
        remove_index()
    own = db is None
    db = db or IndexDatabase()
    try:
        report = IndexReport()
        for root in dict.fromkeys(targets):
            known = catalog.root_of(db, root)
            same_root = known is not None and known.path == root
            h = hidden if hidden is not None else (known.hidden if known else False)
            n = no_ignore if no_ignore is not None else (known.no_ignore if known else False)
            if hidden is not None or no_ignore is not None or not known:
                catalog.register(db, root, h, n)
            elif not same_root:
                root = known.path  # a path inside a library: update that library
            _Run(db, root, h, n, report, emit, stop, workers).run()
            if stop.is_set():
                report.stopped = True
                break
            catalog.mark_updated(db, root)
        report.files, report.passages, report.bytes, _ = catalog.totals(db, list(dict.fromkeys(targets)))
        report.seconds = time.monotonic() - started
        emit(Done(report))
        return report
    finally:
        if own:
            db.close()


class _Run:
    """One root's update (the three steps of the module docstring)."""

    def __init__(self, db, root, hidden, no_ignore, report, emit, stop, workers):
        self.db, self.root, self.report, self.emit, self.stop = db, root, report, emit, stop
        self.hidden, self.no_ignore = hidden, no_ignore
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.seen: set[int] = set()  # ids of rows the walk met (flat: ints, no text)
        self.unlisted: list[bytes] = []  # folders that could not be listed: keep what is under them
        self.pending_skips: list[Skip] = []
        self.pending: list[Outcome] = []  # read, not yet written (see flush)
        self.pending_bytes = 0
        self.flushed_at = time.monotonic()

    def run(self) -> None:
        work = self.scan()
        if self.stop.is_set():
            return
        self.read(work)
        if not self.stop.is_set():
            self.sweep()

    # 1. the walk -------------------------------------------------------------------
    def scan(self) -> list[tuple[bytes, int, str | None]]:
        work: list[tuple[bytes, int, str | None]] = []
        batch: list[Found] = []
        count = 0
        for item in walk(self.root, hidden=self.hidden, no_ignore=self.no_ignore):
            if self.stop.is_set():
                break
            if isinstance(item, Skip):
                self.skip(item)
                continue
            count += 1
            if count % 2000 == 0:
                self.emit(Scanning(self.root, count))
            batch.append(item)
            if len(batch) >= LOOKUP_BATCH:
                self.compare(batch, work)
                batch = []
        if not self.stop.is_set():
            self.compare(batch, work)
        self.flush_skips()
        return work

    def compare(self, found: list[Found], work: list[tuple[bytes, int, str | None]]) -> None:
        """Each file found against its fingerprint in the index, looked up a batch at a time
        (one query per file was a third of a 20,000-file walk): unchanged files are kept,
        the others join `work` (with their old content hash)."""
        if not found:
            return
        marks = ", ".join("?" * len(found))
        rows = {bytes(r[0]): r[1:] for r in self.db.query(f"{_FINGERPRINTS} IN ({marks})", [f.path for f in found])}
        for item in found:
            row = rows.get(item.path)
            if row is not None and self.unchanged(row, item):
                self.seen.add(row[0])
                if row[5] == "indexed":
                    self.report.unchanged += 1
                else:
                    self.report_skip(item.path, row[6])
                continue
            work.append((item.path, item.size, row[4] if row is not None else None))

    @staticmethod
    def unchanged(row: tuple, item: Found) -> bool:
        # sha256 is written last: a row without it was never finished.
        return row[4] is not None and (row[1], row[2], row[3]) == (item.size, item.mtime_ns, item.inode)

    def report_skip(self, path: bytes, why: str) -> None:
        event = Skipped(path, why)
        self.report.skipped.append(event)
        self.emit(event)

    def skip(self, item: Skip) -> None:
        self.report_skip(item.path, item.why)
        if item.unlisted:
            self.unlisted.append(item.path)
        self.pending_skips.append(item)
        if len(self.pending_skips) >= 500:
            self.flush_skips()

    def flush_skips(self) -> None:
        """Record what the walk left out (one transaction per batch), writing only changes."""
        if not self.pending_skips:
            return
        with self.db.write() as c:
            for item in self.pending_skips:
                row = c.execute("SELECT id, status, why FROM files WHERE path = ?", (item.path,)).fetchone()
                if row is not None and row[1] == "skipped" and row[2] == item.why:
                    self.seen.add(row[0])
                    continue
                if row is not None and item.unlisted:
                    self.seen.add(row[0])  # keep an indexed file we merely cannot read now
                    continue
                if row is not None:  # indexed before, left out now (e.g. no more --hidden)
                    catalog.delete_files(c, [row[0]])
                    self.report.removed += row[1] == "indexed"
                cur = c.execute("INSERT INTO files (path, kind, status, why, updated_at) VALUES (?, ?, 'skipped', ?, ?)",
                                (item.path, "folder" if item.folder else None, item.why, time.time()))
                self.seen.add(cur.lastrowid)
        self.pending_skips.clear()

    # 2. reading --------------------------------------------------------------------
    def read(self, work: list[tuple[bytes, int, str | None]]) -> None:
        if not work:
            return
        total_bytes = sum(size for _, size, _ in work)
        started = time.monotonic()
        done = [0, 0]

        def progress(current: bytes) -> None:
            self.emit(Progress(done[0], len(work), done[1], total_bytes, time.monotonic() - started, current))

        tasks = (Task(path, sha) for path, _, sha in work)
        inline = len(work) <= INLINE_FILES and total_bytes <= INLINE_BYTES
        outcomes = self._inline(tasks, progress) if inline else self._pooled(tasks, progress)
        for outcome in outcomes:
            self.commit(outcome)
            done[0] += 1
            done[1] += outcome.size  # as read (0 for a file gone or refused unread)
            progress(outcome.path)
        self.flush()  # also after Ctrl+C: what was read is kept

    def _inline(self, tasks: Iterator[Task], progress) -> Iterator[Outcome]:
        for task in tasks:
            if self.stop.is_set():
                return
            progress(task.path)
            yield extract(task)

    def _pooled(self, tasks: Iterator[Task], progress) -> Iterator[Outcome]:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        with _stderr_with_a_descriptor(), _sigint_blocked():
            pool = context.Pool(self.workers, initializer=_worker_init, maxtasksperchild=TASKS_PER_WORKER)
        in_flight: collections.deque = collections.deque()
        try:
            while True:
                while not self.stop.is_set() and len(in_flight) < self.workers * WINDOW_PER_WORKER:
                    task = next(tasks, None)
                    if task is None:
                        break
                    progress(task.path)
                    in_flight.append((task, pool.apply_async(extract, (task,)), time.monotonic()))
                if not in_flight or self.stop.is_set():
                    return
                task, result, since = in_flight[0]
                try:
                    outcome = result.get(timeout=0.1)
                except multiprocessing.TimeoutError:
                    if time.monotonic() - since < TASK_TIMEOUT:
                        continue
                    outcome = Outcome(task.path, "changed", why=f"took over {TASK_TIMEOUT:.0f} s to read; "
                                      "it is tried again on the next run")
                in_flight.popleft()
                yield outcome
        finally:
            pool.terminate()  # Ctrl+C: the files in flight are dropped, read again next time
            pool.join()
            # Free the pool's semaphores now, not at the interpreter's exit: after Ctrl+C with
            # a model loaded the command leaves with os._exit (cli/main.py), which skips
            # finalizers, and multiprocessing's helper then warned of "leaked semaphore
            # objects" (the pool sits in reference cycles).
            in_flight.clear()
            result = pool = None  # the last result holds the pool's cache, which holds a queue
            gc.collect()

    def commit(self, out: Outcome) -> None:
        """Queue one file's outcome for the next group commit (see `flush`)."""
        if out.status in ("skipped", "changed"):
            self.report_skip(out.path, out.why or "")
        if out.status == "changed":
            row = self.db.query("SELECT id FROM files WHERE path = ?", (out.path,))
            if row:
                self.seen.add(row[0][0])  # keep the indexed version until it can be read whole
            return
        self.pending.append(out)
        self.pending_bytes += out.size
        if self.pending_bytes >= GROUP_BYTES or time.monotonic() - self.flushed_at >= GROUP_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the queued files in one transaction, each file's fingerprint after its passages.

        One transaction per file made FTS5 write (and then merge) one segment per file: 35%
        more CPU than the bare insert (bench/RESULTS.md). A group still holds whole files
        only, so `kill -9` loses at most the files read in the last GROUP_SECONDS."""
        if not self.pending:
            return
        kept = self.report.indexed
        try:
            with self.db.write() as c:
                for out in self.pending:
                    self._write(c, out)
        except XGenError as exc:
            if "full" in str(exc):
                raise XGenError(f"the disk is full: {kept} files were indexed in this run and "
                                "are kept; free some space and run the same command to go on") from None
            raise
        self.pending.clear()
        self.pending_bytes = 0
        self.flushed_at = time.monotonic()

    def _write(self, c, out: Outcome) -> None:
        row = c.execute(_FINGERPRINT, (out.path,)).fetchone()
        if out.status == "gone":
            if row is not None:
                catalog.delete_files(c, [row[0]])
                self.report.removed += 1
            return
        fingerprint = (out.size, out.mtime_ns, out.inode, out.sha256)
        if out.status == "same" and row is not None:
            c.execute("UPDATE files SET size = ?, mtime_ns = ?, inode = ?, sha256 = ?, updated_at = ? WHERE id = ?",
                      (*fingerprint, time.time(), row[0]))
            self.seen.add(row[0])
            self.report.unchanged += row[5] == "indexed"
            return
        if row is not None and tuple(row[1:5]) == fingerprint and row[5] == out.status:
            self.seen.add(row[0])  # another run committed this very content meanwhile
            self.report.indexed += out.status == "indexed"
            return
        if row is None:
            file_id = c.execute("INSERT INTO files (path, status, updated_at) VALUES (?, ?, ?)",
                                (out.path, out.status, time.time())).lastrowid
        else:
            file_id = row[0]
            c.execute("DELETE FROM passages WHERE file_id = ?", (file_id,))
            c.execute("UPDATE files SET sha256 = NULL WHERE id = ?", (file_id,))
        add_passages(c, file_id, [(i, *p) for i, p in enumerate(out.passages)])
        c.execute("UPDATE files SET status = ?, kind = ?, why = ?, n_passages = ?, n_tokens = NULL, size = ?, "
                  "mtime_ns = ?, inode = ?, sha256 = ?, updated_at = ? WHERE id = ?",
                  (out.status, out.kind, out.why, len(out.passages), *fingerprint, time.time(), file_id))
        self.seen.add(file_id)
        self.report.indexed += out.status == "indexed"

    # 3. the sweep ------------------------------------------------------------------
    def sweep(self) -> None:
        condition, params = catalog.where(self.root)
        gone = []
        for file_id, path, status in self.db.query(f"SELECT id, path, status FROM files WHERE {condition}", params):
            if file_id in self.seen or any(names.is_within(bytes(path), u) for u in self.unlisted):
                continue
            gone.append(file_id)
            self.report.removed += status == "indexed"
        if gone:
            with self.db.write() as c:
                catalog.delete_files(c, gone)


@contextlib.contextmanager
def _stderr_with_a_descriptor():
    """The real standard error while worker processes start, when sys.stderr has no file
    descriptor: multiprocessing's helper process (its resource tracker, started with the
    first spawned worker) is handed `sys.stderr.fileno()`, and inside a Textual app that
    is -1 (Textual captures prints), so starting the pool failed with "bad value(s) in
    fds_to_keep" and the app could not index a folder."""
    try:
        usable = sys.stderr is not None and sys.stderr.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        usable = False
    if usable or sys.__stderr__ is None:
        yield
        return
    with contextlib.redirect_stderr(sys.__stderr__):
        yield


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT blocked in this thread while the pool starts: the pool's own threads, which
    start workers again later (TASKS_PER_WORKER), inherit the mask, and so does every
    worker. Ctrl+C in a terminal reaches the whole process group, and a worker still
    importing (before `_worker_init` ignores SIGINT) printed a KeyboardInterrupt traceback.
    The main thread, where Python handles signals, still gets it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _worker_init() -> None:
    # Ctrl+C reaches the whole process group: the parent decides, the workers carry on
    # until it terminates them (no traceback from each of them).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
