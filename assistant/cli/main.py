"""The `xgen` group and the model-file commands: convert, verify, demo."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from assistant.cli.interrupt import STOPPED_EXIT, leave_now
from assistant.cli.options import model_options, session_option
from models.errors import XGenError


class XGenGroup(click.Group):
    """Turns expected failures into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        _sigterm_as_interrupt()
        try:
            return super().invoke(ctx)
        except XGenError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("\ninterrupted; nothing half-written was kept", err=True)
            ctx.exit(STOPPED_EXIT)


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
@click.option("--verify", "then_verify", is_flag=True, help="Check the result against the source afterwards.")
@click.option("--report", is_flag=True, help="Print each tensor's quantization error (NMSE of the dequantized "
              "weights; slower: everything is dequantized once more).")
def convert(src: str, out: Path | None, file_type: str, force: bool, threads: int | None,
            variant: str | None, revision: str | None, then_verify: bool, report: bool = False) -> None:
    """Convert an XGen checkpoint (a local folder or a Hub id) into a GGUF file.

    A Hub id such as Salesforce/xgen-7b-8k-inst is downloaded first (only the files
    needed; an interrupted download resumes). The conversion streams one tensor at a
    time and quantizes with llama.cpp's own code, so a 7B model converts on a laptop.
    """
    from converter.convert import convert as run_convert
    from converter.download import download, looks_like_hub_id
    from converter.quant import get_file_type
    from models.paths import models_dir
    from models.registry import get_variant, variant_for_hub_id

    ftype = get_file_type(file_type)
    chosen = get_variant(variant) if variant else None
    if looks_like_hub_id(src):
        chosen = chosen or variant_for_hub_id(src)
        name = chosen.name if chosen else src.split("/")[-1]
    else:
        name = chosen.name if chosen else Path(src).resolve().name
    out = out or models_dir() / f"{name}-{ftype.name}.gguf"
    if out.exists() and not force:
        raise XGenError(f"{out} already exists; pass --force to overwrite it")
    if looks_like_hub_id(src):
        click.echo(f"downloading {src} from the Hugging Face Hub", err=True)
        folder = download(src, revision=revision)
    else:
        folder = Path(src)
    result = _convert_with_progress(run_convert, folder, out, ftype.name, force, threads, chosen, name, report)
    if report:
        _print_error_report(result)
    _print_conversion(result)
    if then_verify:
        _print_verify(_verify(result.path, folder, threads))


def _convert_with_progress(run_convert, folder, out, file_type, force, threads, variant, name, report=False):
    from tqdm import tqdm

    bar = tqdm(total=None, unit="tensor", desc="converting", file=sys.stderr, leave=False)

    def progress(done: int, total: int, tensor) -> None:
        bar.total = total
        bar.set_postfix_str(f"{tensor.source.gguf_name} {tensor.qtype.name}", refresh=False)
        bar.update(1)

    try:
        return run_convert(folder, out, file_type, force=force, threads=threads, variant=variant,
                           name=name, progress=progress, measure_error=report)
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


def _print_conversion(result) -> None:
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


def run() -> None:
    """The `xgen` program. After an interrupt has been cleaned up (exit 130), leave without
    interpreter finalization: native libraries (torch, ggml) can crash tearing down after a
    signal landed mid-computation, which would turn a clean Ctrl+C/kill into a segfault."""
    try:
        main()
    except SystemExit as exc:
        if exc.code == STOPPED_EXIT:
            leave_now(STOPPED_EXIT)
        raise
