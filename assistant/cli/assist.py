"""`xgen models`, `xgen pull`, `xgen summarize` and `xgen ask`: faces over the core."""

from __future__ import annotations

import json
import os

import click

from assistant.cli.interrupt import STOPPED_EXIT, run_interruptible
from assistant.cli.output import write_stdout
from assistant.cli.options import model_options, remote_options, session_option, timeout_option
from assistant.cli.printer import EventPrinter, print_sources, print_summary_end
from assistant.store import Store
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
@click.option("--parallel", type=click.IntRange(1, 256),
              help="FOLDER with a server: files summarized at once (default: the server's slots, else 1).")
@model_options
@timeout_option
def summarize(files, form, words, as_json, temperature, parallel, model_ref, engine_kind, n_ctx, threads, kv_cache,
              remote_timeout=None) -> None:
    """Summarize FILES (text, Markdown, code, HTML, PDF, DOCX; - for stdin), however long,
    or a FOLDER: each of its files, then the folder as a whole, naming its files.

    A document longer than the context is summarized in parts whose summaries are then
    combined; nothing is truncated, and a text file too large to load is read in parts.
    Partial summaries are cached, so a re-run (or another --form) skips the parts already
    done. Ctrl+C stops and prints the parts done.

    A summary is not kept as a session (`xgen sessions list` stays yours); the summary
    itself is kept with the cache. To ask about a file afterwards: `xgen ask FILE -q ...`.
    """
    from dataclasses import replace

    from assistant.modelref import open_model
    from assistant.session import SUMMARY_SETTINGS, Conversation, SummaryForm

    summary_form = SummaryForm("words", words) if words else SummaryForm(form)
    settings = replace(SUMMARY_SETTINGS, temperature=temperature)
    folders = [f for f in files if f != "-" and os.path.isdir(os.path.expanduser(f))]
    if folders:
        if len(files) > 1:
            raise XGenError(f"{folders[0]} is a folder: summarize one folder at a time, or files")
        from assistant.cli.folder import summarize_folder_command

        summarize_folder_command(folders[0], summary_form, settings, as_json, parallel,
                                 (model_ref, engine_kind, n_ctx, threads, kv_cache), remote_timeout)
        return
    if parallel:
        raise click.UsageError("--parallel applies to a folder")
    with Store() as store:
        conversation = Conversation(store, kept=False)
        read = conversation.add_files(files)
        if read.problems:
            raise XGenError(read.problems[0])
        # read.notes are not printed: a reader's notes come again with its summary's notes.
        with open_model(model_ref, engine_kind, n_ctx, threads, kv_cache,
                        remote=remote_options(remote_timeout)) as model:
            if model.note:
                click.echo(f"note: {model.note}", err=True)
            printer = EventPrinter(quiet=as_json)
            results = []
            interrupted = False
            for source in read.files:
                if not as_json and len(read.files) > 1:
                    click.echo(f"\n## {source.name}\n")
                result, interrupted = run_interruptible(lambda stop, source=source: conversation.summarize(
                    model, source, summary_form, printer, stop, settings=settings))
                printer.finished()
                results.append((source, result))
                if not as_json:
                    print_summary_end(result)
                if result.stopped or interrupted:
                    break
    if as_json:
        payload = [{"file": d.source, "summary": r.text, "stopped": r.stopped, "notes": r.notes,
                    "stats": r.stats.as_dict()} for d, r in results]
        click.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    if interrupted or results[-1][1].stopped:
        raise SystemExit(STOPPED_EXIT)


@click.command()
@click.argument("paths", nargs=-1)
@click.option("-q", "--question", "questions", multiple=True, required=True, callback=_non_empty,
              help="The question; repeat for follow-ups in the same session.")
@session_option
@click.option("--json", "as_json", is_flag=True,
              help="Print each answer as one JSON line: session, answer, sources, given, left_out.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.2, show_default=True)
@click.option("--max-tokens", type=click.IntRange(16, 4096),
              help="Longest answer in tokens (default: 512, less in small contexts).")
@model_options
@timeout_option
def ask(paths, questions, session_id, as_json, temperature, max_tokens, model_ref, engine_kind, n_ctx, threads,
        kv_cache, remote_timeout=None) -> None:
    """Ask questions about files and folders (PATHS; - for standard input); answers list
    their sources as [n] = file and lines (or page).

    The files are indexed once (`xgen index`) and kept current: a later question costs a
    search, not a re-read. When every passage fits the context they all go in; otherwise
    the passages that best match the question (and the recent ones) are given and you are
    told how many were left out. Follow-up questions (-q again) re-use the model's cache
    of the earlier ones; with --session, the saved conversation continues where it ended
    (its files and folders brought up to date, its earlier turns given back to the model
    as far as the context allows).
    """
    from assistant.modelref import choose_model, open_model
    from assistant.session import Conversation, SamplingSettings

    printer = EventPrinter(quiet=as_json)
    with Store() as store:
        conversation = Conversation(store)
        session_model = ""
        if session_id:
            reopened = conversation.open(session_id)
            found = _indexed(lambda stop: conversation.read_files(printer, stop))
            if found.problems:
                raise XGenError(f"session {reopened.session.short_id} cannot continue: {found.problems[0]}")
            _notes(found.notes)
            session_model = reopened.session.model_ref
        read = _indexed(lambda stop: conversation.add_files(paths, record=False, large=False, events=printer,
                                                            stop=stop))
        if read.problems:
            raise XGenError(read.problems[0])
        _notes(read.notes)
        if not conversation.documents:
            raise XGenError("give at least one file or folder to ask about (or - for standard input), or --session")
        choice = choose_model(model_ref, session_model)
        with open_model(choice.ref, engine_kind, n_ctx, threads, kv_cache, implicit=choice.implicit,
                        remote=remote_options(remote_timeout)) as model:
            if model.note:
                click.echo(f"note: {model.note}", err=True)
            try:
                _ask_each(conversation, model, questions, SamplingSettings(temperature=temperature), max_tokens,
                          printer)
            finally:
                conversation.close()


def _indexed(work):
    """Attach files and folders (indexing what changed), Ctrl+C keeping what was indexed."""
    read, interrupted = run_interruptible(work, notice="stopping after the files being read; what is indexed is kept")
    if interrupted or read.stopped:
        click.echo("stopped: what was indexed is kept; run the same command to go on", err=True)
        raise SystemExit(STOPPED_EXIT)
    return read


def _notes(notes) -> None:
    for note in notes:
        click.echo(f"note: {note}", err=True)


def _ask_each(conversation, model, questions, settings, max_tokens, printer) -> None:
    """Ask the questions in turn, printing each answer and its sources; stop at an interrupt."""
    from assistant.session import Sources

    for question in questions:
        if not printer.quiet:
            click.echo(f"\n> {question.strip()}\n")
        answer, interrupted = run_interruptible(lambda stop, q=question: conversation.ask(
            model, q, printer, stop, answer_tokens=max_tokens, settings=settings))
        printer.finished()
        session = conversation.session
        if printer.quiet:
            write_stdout(json.dumps(_answer_json(session.id if session else None, answer)) + "\n")
        else:
            print_sources(Sources.of(answer))
        kept = session is not None and conversation.store.has_session(session.id)
        if answer.stopped or interrupted:
            click.echo("\nstopped; " + (f"what was written is saved in session {session.short_id}" if kept else
                                         "what was written was not saved: the session was deleted meanwhile"),
                       err=True)
            raise SystemExit(STOPPED_EXIT)
    session = conversation.session
    assert session is not None
    if not conversation.store.has_session(session.id):  # deleted by another program while it was written
        click.echo(f"\n(session {session.short_id} was deleted while the answer was written; it was not kept)",
                   err=True)
        return
    click.echo(f"\n(session {session.short_id}: `xgen ask -s {session.short_id} -q ...` continues it)", err=True)


def _answer_json(session_id, answer) -> dict:
    """`ask --json`: the answer and every passage the model had in view (* cited)."""
    cited = {p.number for p in answer.citations}
    return {"session": session_id, "answer": answer.text,
            "sources": [{"n": p.number, **p.found.as_json(), "cited": p.number in cited} for p in answer.sources],
            "given": len(answer.sources), "left_out": max(0, answer.passages_total - len(answer.sources))}
