"""`xgen summarize FOLDER`: a summary of each file, then one summary of the folder.

1. The folder is brought up to date in the library index (the same files `ask` reads:
   ignore rules, hidden files and unreadable ones left out, each with a reason).
2. Each indexed file is summarized through `Conversation.summarize` (a long one in parts,
   as for one file). A file's summary is cached by its content hash, the model and the
   settings, so a re-run, or one after Ctrl+C, only summarizes the files not done yet.
   With a remote engine up to `parallel` files are summarized at once (a server started
   with several slots runs them side by side); a local engine runs one at a time.
3. The per-file summaries, each under its file's path, are summarized into one that names
   its files. When they do not fit one context, the summarizer combines them in parts
   (map-reduce), as it does for a long document.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assistant.documents import Document
from assistant.engines.remote import RemoteEngine
from assistant.files import absolute, read_source
from assistant.jobevents import JobEvents
from assistant.library import IndexDatabase, names, update_library
from assistant.library.catalog import resolve
from assistant.library.scope import indexed_files
from assistant.modelref import LoadedModel
from assistant.safetext import shown_name
from assistant.session import SUMMARY_SETTINGS, Conversation, SamplingSettings, SummaryForm
from assistant.store import Store
from models.errors import XGenError

FILE_FORM = SummaryForm("paragraph")  # each file's summary; the folder's takes the form asked for
COMBINE_NAME = "{folder}: the summaries of its {n} files, each under its path; name the files in the summary"


@dataclass
class FileSummary:
    path: str  # absolute
    name: str  # from the folder's name: smith/letters/insurer.md
    summary: str
    cached: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class FolderSummary:
    folder: str
    summary: str = ""
    files: list[FileSummary] = field(default_factory=list)  # in path order, the ones done
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    skipped: int = 0  # files the index leaves out
    total: int = 0  # files to summarize
    stopped: bool = False
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"folder": self.folder, "summary": self.summary,
                "files": [{"path": f.path, "summary": f.summary} for f in self.files],
                "failed": [{"path": p, "why": w} for p, w in self.failed], "stopped": self.stopped,
                "notes": self.notes}


def parallel_calls(model: LoadedModel, requested: int | None) -> tuple[int, str | None]:
    """How many files to summarize at once, and a note when the request was changed: the
    local engines run one generation at a time; a server runs what it has slots for
    (`total_slots` from llama-server's /props), or what the user asked."""
    engine = model.engine
    if not isinstance(engine, RemoteEngine):
        note = f"the {engine.name} engine runs one summary at a time (--parallel needs a server)" \
            if requested and requested > 1 else None
        return 1, note
    return requested or engine.total_slots or 1, None


def summarize_folder(store: Store, model: LoadedModel, folder: str | Path, form: SummaryForm, *,
                     events: JobEvents | None = None, stop: threading.Event | None = None,
                     parallel: int = 1, settings: SamplingSettings = SUMMARY_SETTINGS,
                     on_file: Callable[[FileSummary], None] | None = None) -> FolderSummary:
    """Summarize every indexed file of `folder`, then the folder (see the module docstring).

    Events: `indexing` while the index is updated, `progress("files", done, total)` as
    files finish, then the folder summary's `text` and `progress`. `on_file` receives
    each file's summary as it is done (from the thread that made it). Stopped (`stop`),
    the files done are kept (and cached) and no folder summary is written."""
    events = events or JobEvents()
    stop = stop or threading.Event()
    given = absolute(folder)
    root = resolve(given)
    out = FolderSummary(str(given))
    report = update_library([root], on_event=events.indexing, stop=stop)
    out.skipped = len(report.skipped)
    if report.stopped or stop.is_set():
        out.stopped = True
        return out
    db = IndexDatabase(check=False)
    try:
        files = indexed_files(db, [root])
    finally:
        db.close()
    if not files:
        raise XGenError(f"{given} holds no file to summarize" + (f" ({out.skipped} left out; see `xgen index "
                                                                  f"{given}`)" if out.skipped else ""))
    out.total = len(files)
    lock = threading.Lock()  # events and results come from the worker threads
    done: dict[bytes, FileSummary] = {}
    base = shown_name(given.name or str(given))

    def one(path: bytes, sha256: str) -> None:
        if stop.is_set():
            return
        shown = base + names.shown(path[len(root.rstrip(names.SEP)):])
        try:
            result = _summarize_file(store, model, path, sha256, shown, stop, settings)
        except XGenError as exc:
            with lock:
                out.failed.append((shown, str(exc)))
            return
        if result is None:
            return  # stopped midway: the parts done are cached
        with lock:
            done[path] = result
            if on_file is not None:
                on_file(result)
            events.progress("files", len(done) + len(out.failed), len(files))

    events.progress("files", 0, len(files))
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="xgen-summary") as pool:
        for future in [pool.submit(one, path, sha) for path, sha in files]:
            future.result()
    out.files = [done[p] for p, _ in files if p in done]
    if stop.is_set() or len(out.files) + len(out.failed) < len(files):
        out.stopped = True
        return out
    out.summary, out.stopped, notes = _combine(store, model, out, base, form, events, stop, settings)
    out.notes += notes
    return out


def _summarize_file(store: Store, model: LoadedModel, path: bytes, sha256: str, shown: str,
                    stop: threading.Event, settings: SamplingSettings) -> FileSummary | None:
    """One file's summary, from the cache or the model; None when stopped midway."""
    source = names.as_str(path)
    key = _cache_key(model, sha256, settings)
    cached = store.cache_get(key)
    if cached is not None:
        return FileSummary(source, shown, cached, cached=True)
    doc = read_source(source)
    result = Conversation(store, kept=False).summarize(model, doc, FILE_FORM, JobEvents(), stop, settings=settings)
    if result.stopped or not result.text:
        return None
    store.cache_put(key, result.text, source=sha256)
    return FileSummary(source, shown, result.text.strip(), notes=list(result.notes))


def _combine(store: Store, model: LoadedModel, out: FolderSummary, base: str, form: SummaryForm,
             events: JobEvents, stop: threading.Event, settings: SamplingSettings) -> tuple[str, bool, list[str]]:
    """The folder's summary from its files' summaries (map-reduce when they do not fit)."""
    body = "\n\n".join(f"File: {f.name}\n{f.summary}" for f in out.files)
    doc = Document(source=out.folder, name=COMBINE_NAME.format(folder=base, n=len(out.files)), kind="text",
                   text=body, sha256=hashlib.sha256(body.encode()).hexdigest())
    result = Conversation(store, kept=False).summarize(model, doc, form, events, stop, settings=settings)
    return result.text.strip(), result.stopped, list(result.notes)


def _cache_key(model: LoadedModel, sha256: str, settings: SamplingSettings) -> str:
    material = json.dumps({"file": sha256, "model": model.engine.identity, "n_ctx": model.engine.n_ctx,
                           "style": model.style.name, "form": asdict(FILE_FORM), "settings": asdict(settings)},
                          sort_keys=True)
    return "folder-file-summary:" + hashlib.sha256(material.encode()).hexdigest()

