"""`xgen models`, `xgen pull`, `xgen summarize` and `xgen ask`."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TypeVar

import click

from models.errors import XGenError

T = TypeVar("T")

model_option = click.option("-m", "--model", "model_ref", metavar="NAME|PATH|URL",
                            help="Registry name, demo, a .gguf file, an HF folder or a server URL "
                                 "(default: the pulled inst model, else the demo).")
engine_option = click.option("-e", "--engine", "engine_kind", type=click.Choice(["llama", "torch", "remote"]),
                             help="How to run it (default: llama for .gguf, torch for an HF folder, "
                                  "remote for a URL).")
ctx_option = click.option("--ctx", "n_ctx", type=click.IntRange(256, 1 << 20),
                          help="Context size in tokens (default: the model's own, 8192 for XGen-8K).")
threads_option = click.option("--threads", type=click.IntRange(1, 256), help="CPU threads for llama.cpp.")
kv_cache_option = click.option("--kv-cache", "kv_cache", type=click.Choice(["f16", "q8_0"]),
                               envvar="XGEN_KV_CACHE", help="llama.cpp KV cache type (default f16; env XGEN_KV_CACHE). q8_0 halves it: "
                                    "a 7B model's full 8K context then fits in 8 GB, with slower prompts on CPU.")


def run_interruptible(work: Callable[[threading.Event], T]) -> T:
    """Run `work(stop)` in a thread; Ctrl+C sets `stop` and keeps what was produced."""
    stop = threading.Event()
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(work(stop))
        except BaseException as exc:  # handed to the main thread, which re-raises it
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        try:
            thread.join(0.1)
        except KeyboardInterrupt:
            if stop.is_set():
                raise  # a second Ctrl+C: give up at once
            stop.set()
            click.echo("\nstopping… (Ctrl+C again to abort)", err=True)
    if error:
        raise error[0]
    return result[0]


def open_model(model_ref: str | None, engine_kind: str | None, n_ctx: int | None, threads: int | None,
               kv_cache: str | None = None):
    from assistant.engines import open_engine
    from assistant.modelref import resolve_model

    ref = resolve_model(model_ref)
    kind = engine_kind or ref.default_engine
    options: dict = {}
    if n_ctx:
        options["n_ctx"] = n_ctx
    if threads and kind == "llama":
        options["n_threads"] = threads
    if kv_cache and kind == "llama":  # the other engines keep their own cache types
        options["kv_type"] = kv_cache
    return ref, open_engine(kind, ref.location, **options)


def load_inputs(files: tuple[str, ...], *, stream_large: bool = False):
    """Documents for FILES ("-" is stdin); with stream_large, text files over the loader's
    size limit come back as TextStreams (summarize reads them window by window)."""
    from assistant.documents import load_document, load_stdin
    from assistant.textstream import open_for_summary

    if not files:
        raise XGenError("give at least one file (or - for standard input)")
    load = open_for_summary if stream_large else load_document
    return [load_stdin() if f == "-" else load(f) for f in files]


@click.command()
def models() -> None:
    """List the known XGen models, the GGUF files on this machine and the default."""
    from assistant.modelref import default_model_name, local_gguf_files
    from models.paths import models_dir
    from models.registry import VARIANTS

    click.echo("Known models (xgen pull NAME):")
    for v in VARIANTS.values():
        click.echo(f"  {v.name:<18} {v.hub_id:<30} {v.context_length:>5} ctx  {v.prompt_style:<10} {v.licence}")
    click.echo(f"\nLocal models in {models_dir()}:")
    files = local_gguf_files()
    for path in files:
        click.echo(f"  {path.name:<40} {path.stat().st_size / 2**30:6.2f} GiB")
    if not files:
        click.echo("  (none yet: `xgen pull xgen-7b-8k-inst`, or `xgen demo` for a tiny demo model)")
    click.echo(f"\nDefault: {default_model_name() or '(none)'}")
    from models.llama_cpp_utils import engine_info_line

    click.echo(f"\n{engine_info_line()}")


@click.command()
@click.argument("name")
@click.option("-t", "--type", "file_type", default=None, help="GGUF type (default: the model's, q4_k_m).")
@click.option("--force", is_flag=True, help="Convert again even if the file exists.")
def pull(name: str, file_type: str | None, force: bool) -> None:
    """Download a registry model from the Hugging Face Hub and convert it into the models folder."""
    from assistant.cli import convert
    from models.registry import get_variant

    variant = get_variant(name)
    ctx = click.get_current_context()
    ctx.invoke(convert, src=variant.hub_id, out=None, file_type=file_type or variant.default_quant,
               force=force, threads=None, variant=variant.name, revision=None, then_verify=False)


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--form", type=click.Choice(["paragraph", "bullets"]), default="paragraph", show_default=True)
@click.option("--words", type=click.IntRange(10, 2000), help="Aim for about this many words.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and its statistics as JSON.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.3, show_default=True)
@model_option
@engine_option
@ctx_option
@threads_option
@kv_cache_option
def summarize(files, form, words, as_json, temperature, model_ref, engine_kind, n_ctx, threads,
              kv_cache) -> None:
    """Summarize FILES (text, Markdown, code, HTML, PDF, DOCX; - for stdin), however long.

    A document longer than the context is summarized in parts whose summaries are then
    combined; nothing is truncated. Partial summaries are cached, so a re-run (or
    another --form) skips the parts already done. Ctrl+C stops and keeps what was done.
    """
    from assistant.engines.base import SamplingSettings
    from assistant.store import Store
    from assistant.summarize import Summarizer, SummaryForm
    from assistant.textstream import TextStream

    summary_form = SummaryForm("words", words) if words else SummaryForm(form)
    docs = load_inputs(files, stream_large=True)
    ref, engine = open_model(model_ref, engine_kind, n_ctx, threads, kv_cache)
    store = Store()
    summarizer = Summarizer(engine, style=ref.style, cache=store,
                            settings=SamplingSettings(temperature=temperature, top_k=40, top_p=0.9))
    results = []
    for doc in docs:
        if not as_json and len(docs) > 1:
            click.echo(f"\n## {doc.name}\n")
        on_text = None if as_json else (lambda t: click.echo(t, nl=False))
        method = summarizer.summarize_stream if isinstance(doc, TextStream) else summarizer.summarize
        result = run_interruptible(lambda stop: method(
            doc, summary_form, stop=stop, on_text=on_text, on_progress=_progress_printer(as_json)))
        if result.text and doc.sha256:
            store.add_summary(None, doc.source, doc.sha256, summary_form.kind, result.text)
        results.append((doc, result))
        if not as_json:
            click.echo("")
            for note in result.notes:
                click.echo(f"note: {note}", err=True)
            if result.stopped and result.partials and not result.text:
                click.echo("\nSummaries of the parts done so far:\n", err=True)
                for i, partial in enumerate(result.partials, 1):
                    click.echo(f"[part {i}] {partial}\n")
            s = result.stats
            click.echo(f"({s.document_tokens} document tokens, {s.parts} parts, {s.model_calls} model calls, "
                       f"{s.cached_parts} cached, {s.seconds:.1f} s)", err=True)
        if result.stopped:
            break
    if as_json:
        payload = [{"file": d.source, "summary": r.text, "stopped": r.stopped, "notes": r.notes,
                    "stats": r.stats.as_dict()} for d, r in results]
        click.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    engine.close()


def _progress_printer(quiet: bool):
    def progress(stage: str, done: int, total: int) -> None:
        if quiet or stage == "final":
            return
        if stage == "read":  # a streamed file: bytes, not parts
            click.echo(f"\rread {done / 2**20:,.0f} of {total / 2**20:,.0f} MiB ({done / max(total, 1):.0%})…",
                       err=True, nl=False)
            if done >= total:
                click.echo("", err=True)
        elif done < total:
            click.echo(f"\r{stage}: part {done + 1} of {total}…", err=True, nl=False)
        else:
            click.echo(f"\r{stage}: {total} parts done.      ", err=True)

    return progress


@click.command()
@click.argument("files", nargs=-1)
@click.option("-q", "--question", "questions", multiple=True, required=True,
              help="The question; repeat for follow-ups in the same session.")
@click.option("-s", "--session", "session_id", help="Continue a saved session (its files are re-attached).")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.2, show_default=True)
@click.option("--max-tokens", type=click.IntRange(16, 4096),
              help="Longest answer in tokens (default: 512, less in small contexts).")
@model_option
@engine_option
@ctx_option
@threads_option
@kv_cache_option
def ask(files, questions, session_id, temperature, max_tokens, model_ref, engine_kind, n_ctx, threads,
        kv_cache) -> None:
    """Ask questions about FILES; answers cite passages as [n] = file and lines.

    A file that fits the context goes in whole; otherwise the passages that best match
    the question are picked (BM25) and you are told how many were left out. Follow-up
    questions (-q again) re-use the model's cache of the earlier ones.
    """
    from assistant.chat import ChatSession
    from assistant.engines.base import SamplingSettings
    from assistant.persist import ProgressiveSave, answer_meta
    from assistant.store import Store

    store = Store()
    session = store.get_session(session_id) if session_id else None
    paths = list(files) + ([f.path for f in store.files(session.id)] if session else [])
    docs = load_inputs(tuple(dict.fromkeys(paths)))
    ref, engine = open_model(model_ref, engine_kind, n_ctx, threads, kv_cache)
    if session is None:
        session = store.create_session(model=ref.name, engine=engine.name)
    chat = ChatSession(engine, docs, style=ref.style, answer_tokens=max_tokens,
                       settings=SamplingSettings(temperature=temperature))
    for doc in docs:
        store.attach_file(session.id, doc.source, doc.name, doc.sha256, engine.count_tokens(doc.text))
    for question in questions:
        store.add_message(session.id, "user", question)
        click.echo(f"\n> {question}\n")
        message = store.add_message(session.id, "assistant", "", meta={"finish": "streaming"})
        saver = ProgressiveSave(store, message.id)

        def on_text(text: str, saver: ProgressiveSave = saver) -> None:
            click.echo(text, nl=False)
            saver.add(text)

        answer = run_interruptible(lambda stop: chat.ask(question, stop=stop, on_text=on_text))
        saver.finish(answer.text, answer_meta(answer, chat.context_used, engine.n_ctx))
        click.echo("")
        for note in answer.notes:
            click.echo(f"note: {note}", err=True)
        for p in answer.citations:
            click.echo(f"\n[{p.number}] {p.label}\n{_indent(p.chunk.text.strip())}")
        if answer.stopped:
            break
    click.echo(f"\n(session {session.id[:8]}: `xgen sessions show {session.id[:8]}`)", err=True)
    engine.close()


def _indent(text: str, width: int = 600) -> str:
    short = text if len(text) <= width else text[:width] + "…"
    return "\n".join("    " + line for line in short.splitlines())


def register(group: click.Group) -> None:
    for command in (models, pull, summarize, ask):
        group.add_command(command)


__all__ = ["register", "run_interruptible", "open_model"]
