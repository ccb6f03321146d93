"""`xgen models`, `xgen pull`, `xgen summarize` and `xgen ask`: faces over the core."""

from __future__ import annotations

import json
import os

import click

from assistant.cli.interrupt import STOPPED_EXIT, run_interruptible
from assistant.cli.options import model_options, remote_options, session_option, timeout_option
from assistant.cli.output import status_line
from models.errors import XGenError


@click.command()
def models() -> None:
    """List the known XGen models, the GGUF files on this machine and the default."""
    from assistant.modelref import default_model_name
    from models.paths import models_dir
    from models.registry import VARIANTS

    click.echo("Known models (xgen pull NAME):")
    for v in VARIANTS.values():
        click.echo(f"  {v.name:<18} {v.hub_id:<30} {v.context_length:>5} ctx  {v.prompt_style:<10} {v.licence}")
    folder = models_dir()
    click.echo(f"\nLocal models in {folder}:")
    files, unusable = _local_models(folder)
    for path, size in files:
        click.echo(f"  {path.name:<40} {size / 2**30:6.2f} GiB")
    if not files:
        click.echo("  (none yet: `xgen pull xgen-7b-8k-inst`, or `xgen demo` for a tiny demo model)")
    if unusable:
        click.echo("\nNot usable (left out):")
        for path, why in unusable:
            click.echo(f"  {path.name:<40} {why}")
    click.echo(f"\nDefault: {default_model_name() or '(none)'}")
    from models.llama_cpp_utils import engine_info_line, weight_layout_line

    click.echo(f"\n{engine_info_line()}\n{weight_layout_line()}")


def _local_models(folder):
    """(path, size) of the usable GGUF models in `folder`, and (path, why) of the `*.gguf`
    entries that are not: folders, dangling links, damaged or truncated files."""
    from assistant.modelref import gguf_file_problem
    from models.gguf_file import read_gguf

    files, unusable = [], []
    for path in sorted(folder.glob("*.gguf")):
        why = gguf_file_problem(path)
        if why is None:
            try:
                read_gguf(path)
                files.append((path, path.stat().st_size))
                continue
            except XGenError as exc:
                why = str(exc).removeprefix(f"{path}: ")
            except OSError as exc:
                why = exc.strerror or str(exc)
        unusable.append((path, why))
    return files, unusable


@click.command()
@click.argument("name")
@click.option("-t", "--type", "file_type", default=None, help="GGUF type (default: the model's, q4_k_m).")
@click.option("--force", is_flag=True, help="Convert again even if the file exists.")
@click.option("--keep-source", is_flag=True, help="Download the checkpoint whole into the Hugging Face cache "
              "first and keep it (default: stream it, no copy on disk).")
def pull(name: str, file_type: str | None, force: bool, keep_source: bool) -> None:
    """Stream a registry model from the Hugging Face Hub into a GGUF in the models folder.

    Tensors are fetched by range requests while earlier ones are quantized; Ctrl+C (or a
    lost network) keeps what was written, and the same command resumes.
    """
    from assistant.cli.main import print_conversion, run_conversion
    from models.registry import get_variant

    variant = get_variant(name)
    outcome = run_conversion(variant.hub_id, file_type=file_type, variant=variant, force=force,
                             keep_source=keep_source)
    print_conversion(outcome.result)


def _non_empty(ctx, param, values):
    if any(not v.strip() for v in values):
        raise click.BadParameter("a question is empty")
    return values


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--form", type=click.Choice(["paragraph", "bullets"]), default="paragraph", show_default=True)
@click.option("--words", type=click.IntRange(10, 2000), help="Aim for about this many words.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and its statistics as JSON.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.3, show_default=True)
@model_options
@timeout_option
def summarize(files, form, words, as_json, temperature, model_ref, engine_kind, n_ctx, threads, kv_cache,
              remote_timeout=None) -> None:
    """Summarize FILES (text, Markdown, code, HTML, PDF, DOCX; - for stdin), however long.

    A document longer than the context is summarized in parts whose summaries are then
    combined; nothing is truncated. Partial summaries are cached, so a re-run (or
    another --form) skips the parts already done. Ctrl+C stops and prints the parts done.
    """
    from dataclasses import replace

    from assistant.modelref import open_model
    from assistant.session import SUMMARY_SETTINGS, summarize_document
    from assistant.store import Store
    from assistant.summarize import SummaryForm

    summary_form = SummaryForm("words", words) if words else SummaryForm(form)
    docs = _load_for_summary(files)
    settings = replace(SUMMARY_SETTINGS, temperature=temperature)
    store = Store()
    model = open_model(model_ref, engine_kind, n_ctx, threads, kv_cache, remote=remote_options(remote_timeout))
    if model.note:
        click.echo(f"note: {model.note}", err=True)
    results = []
    interrupted = False
    for doc in docs:
        if not as_json and len(docs) > 1:
            click.echo(f"\n## {doc.name}\n")
        on_text = None if as_json else (lambda t: click.echo(t, nl=False))
        result, interrupted = run_interruptible(lambda stop, doc=doc: summarize_document(
            model, doc, summary_form, store, stop=stop, on_text=on_text, on_progress=_progress_printer(as_json),
            settings=settings))
        results.append((doc, result))
        if not as_json:
            _print_summary_result(result)
        if result.stopped or interrupted:
            break
    if as_json:
        payload = [{"file": d.source, "summary": r.text, "stopped": r.stopped, "notes": r.notes,
                    "stats": r.stats.as_dict()} for d, r in results]
        click.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    if interrupted or results[-1][1].stopped:
        raise SystemExit(STOPPED_EXIT)
    model.engine.close()


def _load_for_summary(files: tuple[str, ...]):
    """Documents for FILES ("-" is stdin); text files over the loader's size limit come
    back as large-file readers that the summarizer reads window by window."""
    from assistant.documents import open_for_summary, open_stdin_for_summary
    from assistant.session import absolute

    return [open_stdin_for_summary() if f == "-" else open_for_summary(absolute(f)) for f in files]


def _print_summary_result(result) -> None:
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


def _progress_printer(quiet: bool):
    """The summary's progress on one stderr line; inside a part, the tokens of its prompt
    read so far follow the part (engines that report them). The final call has no line:
    its text streams to stdout."""
    line = ""  # the current stage's line, while it is shown
    width = 0  # of the text on the line, to blank what a shorter one leaves

    def show(text: str, end: str = "") -> None:
        nonlocal width
        status_line(text.ljust(width), end=end)
        width = 0 if end else len(text)

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal line
        if quiet:
            return
        if stage == "prompt":
            if line:
                show(f"{line}, {done:,} of {total:,} tokens read…")
            return
        if stage == "final":
            line = ""
            return
        if stage == "read" and not total:  # streamed standard input: its size is known at the end
            line = f"read {done / 2**20:,.1f} MiB"
        elif stage == "read":  # a streamed file: bytes, not parts
            line = f"read {done / 2**20:,.1f} of {total / 2**20:,.1f} MiB ({done / max(total, 1):.0%})"
            if done >= total:
                show(line + "…", end="\n")
                line = ""
                return
        elif done < total:
            line = f"{stage}: part {done + 1} of {total}"
        else:
            show(f"{stage}: {total} parts done.", end="\n")
            line = ""
            return
        show(line + "…")

    return progress


@click.command()
@click.argument("files", nargs=-1)
@click.option("-q", "--question", "questions", multiple=True, required=True, callback=_non_empty,
              help="The question; repeat for follow-ups in the same session.")
@session_option
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.2, show_default=True)
@click.option("--max-tokens", type=click.IntRange(16, 4096),
              help="Longest answer in tokens (default: 512, less in small contexts).")
@model_options
@timeout_option
def ask(files, questions, session_id, temperature, max_tokens, model_ref, engine_kind, n_ctx, threads,
        kv_cache, remote_timeout=None) -> None:
    """Ask questions about FILES; answers list their sources as [n] = file and lines.

    A file that fits the context goes in whole; otherwise the passages that best match
    the question are picked (BM25) and you are told how many were left out. Follow-up
    questions (-q again) re-use the model's cache of the earlier ones; with --session,
    the saved conversation continues where it ended (its files are re-read, its earlier
    turns given back to the model as far as the context allows).
    """
    from assistant.engines.base import SamplingSettings
    from assistant.modelref import open_model
    from assistant.session import Conversation, load_file
    from assistant.store import Store

    conversation = Conversation(Store())
    implicit = model_ref is None and not os.environ.get("XGEN_MODEL")  # the user chose no model
    if session_id:
        reopened = conversation.open(session_id)
        read = conversation.read_files()
        if read.problems:
            raise XGenError(f"session {reopened.session.short_id} cannot continue: {read.problems[0]}")
        for note in read.notes:
            click.echo(f"note: {note}", err=True)
        model_ref = model_ref or reopened.session.model_ref or None
    for path in files:
        doc = load_file(path)
        for note in doc.notes:
            click.echo(f"note: {note}", err=True)
        conversation.attach(doc, record=False)
    if not conversation.documents:
        raise XGenError("give at least one file to ask about (or - for standard input), or --session")
    model = open_model(model_ref, engine_kind, n_ctx, threads, kv_cache, implicit=implicit,
                       remote=remote_options(remote_timeout))
    if model.note:
        click.echo(f"note: {model.note}", err=True)
    settings = SamplingSettings(temperature=temperature)
    for question in questions:
        click.echo(f"\n> {question.strip()}\n")
        (answer, _), interrupted = run_interruptible(lambda stop, q=question: conversation.ask(
            model, q, stop=stop, on_text=lambda t: click.echo(t, nl=False), answer_tokens=max_tokens,
            settings=settings))
        click.echo("")
        for note in answer.notes:
            click.echo(f"note: {note}", err=True)
        _print_sources(answer)
        if answer.stopped or interrupted:
            session = conversation.session
            click.echo(f"\nstopped; what was written is saved in session {session.short_id if session else '?'}",
                       err=True)
            raise SystemExit(STOPPED_EXIT)
    session = conversation.session
    assert session is not None
    click.echo(f"\n(session {session.short_id}: `xgen ask -s {session.short_id} -q ...` continues it)", err=True)
    model.engine.close()


def _print_sources(answer) -> None:
    """The passages the model was given, consecutive uncited ones on one line; * marks the cited."""
    from assistant.chat import source_groups

    if not answer.sources:
        return
    given, total = len(answer.sources), answer.passages_total
    left = f"; {total - given} did not fit the context" if given < total else ""
    click.echo(f"\nSources ({given} of {total} passages given to the model{left}; * cited):")
    for group in source_groups(answer):
        if group.cited:
            click.echo(f"  * {group.numbers} {group.label}")
            click.echo(_indent(group.passages[0].chunk.text.strip()))
        else:
            click.echo(f"    {group.numbers} {group.label}")


def _indent(text: str, width: int = 300) -> str:
    short = text if len(text) <= width else text[:width] + "…"
    return "\n".join("      " + line for line in short.splitlines())
