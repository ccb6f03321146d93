"""The `xgen` group and the model-file commands: convert, verify, demo."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from assistant.cli.interrupt import STOPPED_EXIT, leave_now
from assistant.cli.options import model_options, session_option
from assistant.cli.output import flush_stdout, printable_streams, raw_stderr, stdout_failed, stdout_is_broken
from assistant.safetext import printable
from models.errors import XGenError


class XGenGroup(click.Group):
    """Turns expected failures into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        _sigterm_as_interrupt()
        with printable_streams():
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context):
        try:
            result = super().invoke(ctx)
            flush_stdout()  # a full disk or closed pipe behind `>` shows here, as one line
            return result
        except XGenError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("\ninterrupted; nothing half-written was kept", err=True)
            ctx.exit(STOPPED_EXIT)
        except OSError as exc:
            if not stdout_is_broken(exc):
                raise
            click.echo(f"error: {stdout_failed(exc)}", err=True)  # `> /dev/full`, a closed pipe
            ctx.exit(1)


@click.group(cls=XGenGroup, invoke_without_command=True)
@click.version_option(package_name="xgen-local")
@model_options
@session_option
@click.pass_context
def main(ctx: click.Context, model_ref, engine_kind, n_ctx, threads, kv_cache, session_id) -> None:
    """xgen-local: private, offline XGen-7B models on your own machine.

    Alone, `xgen` opens the terminal app (as `xgen chat` does); the model options given
    here also apply to the command that follows (`xgen --model FILE ask ...`).
    """
    given = {k: v for k, v in dict(model_ref=model_ref, engine_kind=engine_kind, n_ctx=n_ctx, threads=threads,
                                   kv_cache=kv_cache).items() if v is not None}
    if ctx.invoked_subcommand is None:
        ctx.invoke(main.get_command(ctx, "chat"), files=(), session_id=session_id, **given)
        return
    if given or session_id:
        # Defaults for the subcommand's own options of the same names (its own value wins).
        defaults = dict(given, **({"session_id": session_id} if session_id else {}))
        ctx.default_map = {name: dict(defaults) for name in main.list_commands(ctx)}


def _sigterm_as_interrupt() -> None:
    # `kill` gets the same clean-up as Ctrl+C (temporary files are removed); during a
    # model job, assistant/cli/interrupt.py handles both signals instead.
    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


@main.command()
@click.argument("src")
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Output .gguf file "
              "(default: the models folder, named after the model and type).")
@click.option("-t", "--type", "file_type", default="q4_k_m", show_default=True,
              help="f32, f16, q8_0, q4_0, q4_k_m, q5_k_m or q6_k.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--threads", type=click.IntRange(1, 256),
              help="Quantization threads (default: the physical cores this process may use).")
@click.option("--variant", help="Registry name of the model, when SRC is a local copy of a published one.")
@click.option("--revision", help="Hub revision (branch, tag or commit) to download.")
@click.option("--keep-source", is_flag=True, help="Download the Hub checkpoint whole into the Hugging Face cache "
              "first, and keep it there (default: stream it, no copy on disk).")
@click.option("--verify", "then_verify", is_flag=True, help="Check the result against the source afterwards.")
@click.option("--report", is_flag=True, help="Print each tensor's quantization error (NMSE of the dequantized "
              "weights; slower: everything is dequantized once more).")
def convert(src: str, out: Path | None, file_type: str, force: bool, threads: int | None,
            variant: str | None, revision: str | None, then_verify: bool, report: bool = False,
            keep_source: bool = False) -> None:
    """Convert an XGen checkpoint (a local folder or a Hub id) into a GGUF file.

    A Hub id such as Salesforce/xgen-7b-8k-inst is streamed: each tensor is read from the
    Hub by range requests (checked against its CRC-32), quantized and written, with no copy
    of the shards on disk; an interrupted run resumes. --keep-source downloads the shards
    into the Hugging Face cache first. The conversion quantizes with llama.cpp's own code,
    one tensor at a time, so a 7B model converts on a laptop.
    """
    outcome = run_conversion(src, out=out, file_type=file_type, force=force, threads=threads, variant=variant,
                             revision=revision, keep_source=keep_source, measure_error=report)
    if report:
        _print_error_report(outcome.result)
    print_conversion(outcome.result)
    if then_verify:
        if outcome.reference is None:
            click.echo("note: streamed, so no local weights to compare logits with (--keep-source keeps them)",
                       err=True)
        _print_verify(_verify(outcome.result.path, outcome.reference, threads))


def run_conversion(src: str, **options):
    """`convert_source` with a progress bar (bytes, tensors, rate, time left) and notes on stderr.

    Ctrl+C or `kill` during a streamed pull keeps its partial output for the next run and says so."""
    from tqdm import tqdm

    from converter.pipeline import convert_source
    from converter.pull import PullInterrupted

    _sigterm_as_interrupt()
    bar = tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc="converting", file=raw_stderr(),
               leave=False)

    def progress(p) -> None:
        bar.total = p.bytes_total
        bar.n = p.bytes_done
        label = f"{p.tensors_done}/{p.tensors_total} tensors"
        if p.tensor is not None:
            label += f", {printable(p.tensor.source.gguf_name)} {p.tensor.qtype.name}"
        bar.set_postfix_str(label, refresh=False)
        bar.refresh()

    def notify(line: str) -> None:
        bar.clear()
        click.echo(f"note: {line}", err=True)
        if line.startswith("streaming"):
            bar.set_description("pulling")

    try:
        return convert_source(src, progress=progress, notify=notify, **options)
    except PullInterrupted as exc:
        bar.close()
        click.echo(f"\n{exc}", err=True)
        click.get_current_context().exit(130)
    finally:
        bar.close()


def _print_error_report(result) -> None:
    """Per-tensor quantization error, then the mean and worst per type (llama2.c style)."""
    click.echo(f"{'tensor':<28} {'type':<5} {'shape':>13}  NMSE")
    by_type: dict[str, list[float]] = {}
    for t in result.tensors:
        error = result.errors.get(t.source.gguf_name)
        if error is None:
            continue
        shape = "x".join(str(d) for d in t.source.shape)
        click.echo(f"{t.source.gguf_name:<28} {t.qtype.name:<5} {shape:>13}  {error:.2e}")
        by_type.setdefault(t.qtype.name, []).append(error)
    for qtype, errors in sorted(by_type.items()):
        click.echo(f"{qtype}: {len(errors)} tensors, mean NMSE {sum(errors) / len(errors):.2e}, "
                   f"worst {max(errors):.2e}")


def print_conversion(result) -> None:
    types = ", ".join(f"{n} {k}" for k, n in sorted(result.type_counts().items()))
    click.echo(f"wrote {result.path} ({result.nbytes / 2**20:.1f} MiB, {result.file_type}) "
               f"in {result.seconds:.1f} s; tensors: {types}")


def _verify(path: Path, reference: Path | None, threads: int | None):
    from converter.verify import verify as run_verify

    return run_verify(path, reference, threads=threads)


def _print_verify(report) -> None:
    click.echo(f"tokenizer: {report.tokenizer_checked} tokens checked, "
               f"{len(report.tokenizer_mismatches)} mismatches, "
               f"{len(report.roundtrip_failures)} round-trip failures")
    for note in report.notes:
        click.echo(f"note: {note}")
    bound = f"bound {report.nmse_bound:.1e} for {report.file_type}" if report.nmse_bound else "no bound"
    for agreement in report.logits:
        click.echo(f"logits: NMSE {agreement.nmse:.2e} ({bound}), top-1 agreement {agreement.top1:.0%} "
                   f"over {agreement.n_tokens} tokens of {agreement.prompt[:40]!r}")
    if not report.ok:
        raise XGenError(f"{report.path}: verification failed: {'; '.join(report.problems)}")
    if report.logits_checked:
        click.echo(f"ok: tokenizer and logits agree with the reference ({report.file_type})")
    else:
        click.echo("ok: tokenizer agrees (pass --reference to also compare logits)")


@main.command()
@click.argument("gguf_file", type=click.Path(path_type=Path))
@click.option("--reference", help="The HF checkpoint folder it was converted from, to compare logits.")
@click.option("--threads", type=click.IntRange(1, 256))
def verify(gguf_file: Path, reference: str | None, threads: int | None) -> None:
    """Check a GGUF: tokenizer round trips and, with --reference, logits against the source."""
    from converter.download import looks_like_hub_id

    if reference and looks_like_hub_id(reference):
        raise XGenError("--reference takes a local checkpoint folder; verify never downloads")
    _print_verify(_verify(gguf_file, Path(reference) if reference else None, threads))


@main.command()
@click.option("-t", "--type", "file_type", default="q4_k_m", show_default=True, help="GGUF type to build.")
def demo(file_type: str) -> None:
    """Build a tiny random XGen-shaped model, convert, verify and run it (seconds, no download).

    It shows the whole pipeline (HF checkpoint -> GGUF -> llama.cpp) on this machine.
    Its weights are random, so its text is nonsense; use `xgen convert` for a real model.
    """
    from converter.demo import build_demo

    build_demo(file_type, echo=click.echo)


NATIVE_MODULES = ("llama_cpp", "torch")  # libraries that may crash in finalization after a signal


def run() -> None:
    """The `xgen` program. After an interrupt has been cleaned up (exit 130), leave without
    interpreter finalization: native libraries (torch, ggml) can crash tearing down after a
    signal landed mid-computation, which would turn a clean Ctrl+C/kill into a segfault."""
    if sys.stdout is None:  # started with its standard output closed (`xgen ... >&-`)
        if sys.stderr is not None:
            sys.stderr.write("error: the standard output is closed; nothing could be shown\n")
        raise SystemExit(1)
    try:
        main()
    except OSError as exc:
        # --help and --version write before a command runs (the group's own handling).
        if not stdout_is_broken(exc):
            raise
        sys.stderr.write(f"error: {stdout_failed(exc)}\n")
        raise SystemExit(1) from None
    except SystemExit as exc:
        # Only when one is loaded: finalization also frees what multiprocessing holds (the
        # library index's worker pool), which os._exit left to its helper to warn about.
        if exc.code == STOPPED_EXIT and any(m in sys.modules for m in NATIVE_MODULES):
            leave_now(STOPPED_EXIT)
        raise
