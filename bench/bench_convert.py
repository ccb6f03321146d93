"""Conversion cost of `xgen convert` against llama.cpp's own two-pass pipeline.

Synthetic checkpoints with XGen-7B's real tensor shapes (4096 / 11008 / 51200, fp32
`.bin` shards) at a few depths; the tiny model is the tests' one. For each depth, in
the same run and interleaved (the order alternates between depths):

- ours: `xgen convert --type q4_k_m` (and `--type f16`), one streaming pass;
- peer: llama.cpp's `convert_hf_to_gguf.py --outtype f16`, then
  `llama_cpp.llama_model_quantize(..., ftype=15)` (Q4_K_M) in its own process
  (see bench/peer.py for where it comes from and the tokenizer it is given).

Each step is a subprocess: wall time, peak RssAnon and VmRSS (bench/memory.py) and
peak size of the output folder (extra disk = peak - final output).

Targets: our peak anonymous memory flat in depth and <= 1.0 GiB; our HF -> q4_k_m time
<= 0.5x the peer's two passes (at every measured depth and extrapolated to 32 layers);
no extra disk beyond the output. Run from the repo root:

    .venv/bin/python -m bench.bench_convert                 # tiny + 2, 4, 8 layers, with the peer
    .venv/bin/python -m bench.bench_convert --quick         # tiny model, ours only (CI smoke test)
    .venv/bin/python -m bench.bench_convert --profile 2     # cProfile of ours, q4_k_m, 2 layers
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from bench import peer
from bench.memory import RunStats, measure
from bench.report import append_results, fit_line, kib_to_gib
from models.config import TRANSFORMER_CONFIGS
from models.synthetic import write_checkpoint

CACHE = Path(__file__).resolve().parent / ".cache"
MAX_ANON_GIB = 1.0  # our peak anonymous memory
FLAT_TOLERANCE_GIB = 0.1  # "flat in depth": max - min over the measured depths
MAX_TIME_RATIO = 0.5  # ours (HF -> q4_k_m) / peer (convert f16 + quantize)
DISK_SLACK = 16 << 20  # bytes beyond the output that still count as "no extra disk"
EXTRAPOLATE_TO = 32


def _row(tool: str, step: str, model: str, layers: int, stats: RunStats, out_bytes: int) -> dict:
    return {"tool": tool, "step": step, "model": model, "layers": layers, "seconds": stats.seconds,
            "anon_gib": kib_to_gib(stats.peak_anon_kib), "rss_gib": kib_to_gib(stats.peak_rss_kib),
            "disk_gib": stats.peak_disk_bytes / 2**30, "out_gib": out_bytes / 2**30,
            "extra_gib": max(0, stats.peak_disk_bytes - out_bytes) / 2**30}


def run_ours(src: Path, model: str, layers: int, file_type: str, out_dir: Path, threads: int) -> dict:
    out = out_dir / f"ours-{file_type}.gguf"
    cmd = [sys.executable, "-m", "assistant.cli", "convert", str(src), "--out", str(out),
           "--type", file_type, "--force"]
    env = dict(os.environ)
    stats = measure(cmd, watch=out_dir, env=env)
    row = _row("ours", f"xgen convert {file_type}", model, layers, stats, out.stat().st_size)
    row["type"] = file_type
    out.unlink()
    return row


def run_peer(src: Path, model: str, layers: int, out_dir: Path, work: Path, threads: int) -> list[dict]:
    peer_src = peer.peer_checkpoint(src, work / f"{src.name}-peer")
    f16 = out_dir / "peer-f16.gguf"
    q4 = out_dir / "peer-q4_k_m.gguf"
    conv = measure(peer.convert_cmd(peer_src, f16), watch=out_dir, env=peer.peer_env())
    f16_bytes = f16.stat().st_size
    quant = measure(peer.quantize_cmd(f16, q4, threads), watch=out_dir)
    q4_bytes = q4.stat().st_size
    rows = [_row("peer", "convert_hf_to_gguf f16", model, layers, conv, f16_bytes),
            _row("peer", "llama_model_quantize q4_k_m", model, layers, quant, q4_bytes)]
    total = RunStats(conv.seconds + quant.seconds, max(conv.peak_anon_kib, quant.peak_anon_kib),
                     max(conv.peak_rss_kib, quant.peak_rss_kib),
                     max(conv.peak_disk_bytes, quant.peak_disk_bytes), 0)
    rows.append(_row("peer", "both passes (HF -> q4_k_m)", model, layers, total, q4_bytes))
    rows[-1]["type"] = "q4_k_m"
    f16.unlink()
    q4.unlink()
    shutil.rmtree(peer_src)
    return rows


def run_depth(model: str, n_layers: int | None, types: list[str], work: Path, with_peer: bool,
              peer_first: bool, threads: int) -> list[dict]:
    args = TRANSFORMER_CONFIGS[model]
    if n_layers is not None:
        args = replace(args, n_layers=n_layers)
    src = work / f"{model}-{args.n_layers}L"
    write_checkpoint(src, args, n_shards=2, seed=0)
    out_dir = work / "out"
    out_dir.mkdir(exist_ok=True)
    steps = [lambda t=t: [run_ours(src, model, args.n_layers, t, out_dir, threads)] for t in types]
    if with_peer:
        peer_step = lambda: run_peer(src, model, args.n_layers, out_dir, work, threads)  # noqa: E731
        steps = [peer_step] + steps if peer_first else steps + [peer_step]
    rows = []
    for step in steps:
        rows += step()
        print(f"  {rows[-1]['tool']} {rows[-1]['step']} {model} {args.n_layers}L: {rows[-1]['seconds']:.1f} s",
              flush=True)
    shutil.rmtree(src)
    return rows


def profile(n_layers: int, file_type: str, top: int = 30) -> None:
    """cProfile our converter in this process (the quantizer's worker threads show as
    the main thread's wait in converter.quant.quantize)."""
    import cProfile
    import pstats

    from converter.convert import convert

    args = replace(TRANSFORMER_CONFIGS["xgen-7b-8k"], n_layers=n_layers)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        src = write_checkpoint(Path(tmp) / "src", args, n_shards=2, seed=0)
        prof = cProfile.Profile()
        prof.enable()
        result = convert(src, Path(tmp) / "out.gguf", file_type, force=True)
        prof.disable()
    print(f"ours {file_type} at {n_layers} layers: {result.seconds:.1f} s")
    stats = pstats.Stats(prof).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def quantize_floor(layers: list[int], file_type: str, threads: int) -> dict[int, float]:
    """Seconds of ggml quantization alone (no reading, no writing) for the whole model at
    each depth: each distinct (shape, type) is timed once on random f32 rows in memory and
    summed over the tensors the q4_k_m policy plans. Both pipelines pay this compute in
    the same ggml function: it is the floor of any converter that writes llama.cpp's bytes."""
    import time

    import numpy as np

    from converter.quant import get_file_type, quantize, tensor_type
    from converter.tensors import expected_shapes

    ftype = get_file_type(file_type)
    rng = np.random.default_rng(0)
    timed: dict[tuple, float] = {}
    floors = {}
    for n in layers:
        args = replace(TRANSFORMER_CONFIGS["xgen-7b-8k"], n_layers=n)
        total = 0.0
        for name, shape in expected_shapes(args).items():
            qtype = tensor_type(name, shape, ftype, n)
            if len(shape) < 2:
                continue
            key = (shape, qtype)
            if key not in timed:
                data = rng.standard_normal(shape, dtype=np.float32) * 0.02
                t = time.perf_counter()
                quantize(data, qtype, threads)
                timed[key] = time.perf_counter() - t
                del data
            total += timed[key]
        floors[n] = total
    return floors


def table(rows: list[dict]) -> str:
    lines = ["| tool | step | model | layers | time s | peak RssAnon GiB | peak VmRSS GiB | peak disk GiB "
             "| output GiB | extra disk GiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['tool']} | {r['step']} | {r['model']} | {r['layers']} | {r['seconds']:.1f} | "
                     f"{r['anon_gib']:.2f} | {r['rss_gib']:.2f} | {r['disk_gib']:.2f} | {r['out_gib']:.2f} | "
                     f"{r['extra_gib']:.2f} |")
    return "\n".join(lines)


def compare(rows: list[dict], floors: dict[int, float] | None = None) -> tuple[str, list[str]]:
    """Side-by-side table (ours q4_k_m vs the peer's two passes), extrapolation, failures."""
    failures = []
    floors = floors or {}
    ours = {(r["model"], r["layers"]): r for r in rows if r["tool"] == "ours" and r.get("type") == "q4_k_m"}
    peers = {(r["model"], r["layers"]): r for r in rows if r["tool"] == "peer" and r.get("type") == "q4_k_m"}
    lines = ["| model | layers | ours q4_k_m s | peer f16+quantize s | time ratio ours/peer | quantize compute s "
             "| ours / quantize compute | ours RssAnon GiB | peer RssAnon GiB | ours extra disk GiB "
             "| peer extra disk GiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(ours):
        o, p = ours[key], peers.get(key)
        floor = floors.get(key[1]) if key[0] != "tiny" else None
        floor_s = f"{floor:.1f}" if floor else "-"
        if p is None:
            lines.append(f"| {key[0]} | {key[1]} | {o['seconds']:.1f} | - | - | {floor_s} | - | {o['anon_gib']:.2f} "
                         f"| - | {o['extra_gib']:.2f} | - |")
            continue
        ratio = o["seconds"] / p["seconds"]
        vs_floor = f"{o['seconds'] / floor:.2f}" if floor else "-"
        lines.append(f"| {key[0]} | {key[1]} | {o['seconds']:.1f} | {p['seconds']:.1f} | {ratio:.2f} | {floor_s} | "
                     f"{vs_floor} | {o['anon_gib']:.2f} | {p['anon_gib']:.2f} | {o['extra_gib']:.2f} | "
                     f"{p['extra_gib']:.2f} |")
        if key[0] != "tiny" and ratio > MAX_TIME_RATIO:
            failures.append(f"time ratio {ratio:.2f} > {MAX_TIME_RATIO} at {key[1]} layers")
    text = "\n".join(lines)

    # Extrapolation to 32 layers from the XGen-shaped depths (least-squares line in depth).
    deep = sorted(k for k in ours if k[0] != "tiny")
    if len(deep) >= 2:
        xs = [k[1] for k in deep]
        extra = ["", f"Extrapolated to {EXTRAPOLATE_TO} layers (least-squares line over {xs} layers):", "",
                 "| series | s at 32 layers | s per layer | RssAnon GiB at 32 layers |", "|---|---|---|---|"]
        series = {"ours xgen convert q4_k_m": ours}
        series |= {"quantize compute alone (q4_k_m policy)": {("xgen-7b-8k", n): {"seconds": f, "anon_gib": 0.0}
                                                          for n, f in floors.items()}}
        series |= {"ours xgen convert f16": {(r["model"], r["layers"]): r for r in rows
                                              if r["tool"] == "ours" and r.get("type") == "f16"}}
        series |= {f"peer {step}": {(r["model"], r["layers"]): r for r in rows
                                    if r["tool"] == "peer" and r["step"] == step}
                   for step in ("convert_hf_to_gguf f16", "llama_model_quantize q4_k_m", "both passes (HF -> q4_k_m)")}
        at32 = {}
        for name, s in series.items():
            keys = [k for k in deep if k in s]
            if len(keys) < 2:
                continue
            a, b = fit_line([k[1] for k in keys], [s[k]["seconds"] for k in keys])
            ma, mb = fit_line([k[1] for k in keys], [s[k]["anon_gib"] for k in keys])
            at32[name] = a + b * EXTRAPOLATE_TO
            anon = "-" if name.startswith("quantize") else f"{ma + mb * EXTRAPOLATE_TO:.2f}"
            extra.append(f"| {name} | {at32[name]:.0f} | {b:.1f} | {anon} |")
        if "peer both passes (HF -> q4_k_m)" in at32:
            ratio = at32["ours xgen convert q4_k_m"] / at32["peer both passes (HF -> q4_k_m)"]
            extra.append("")
            extra.append(f"Extrapolated time ratio ours/peer at {EXTRAPOLATE_TO} layers: {ratio:.2f} "
                         f"(target <= {MAX_TIME_RATIO}).")
            if ratio > MAX_TIME_RATIO:
                failures.append(f"extrapolated time ratio {ratio:.2f} > {MAX_TIME_RATIO} at {EXTRAPOLATE_TO} layers")
        text += "\n" + "\n".join(extra)
    return text, failures


def check_memory_disk(rows: list[dict]) -> list[str]:
    failures = []
    ours = [r for r in rows if r["tool"] == "ours"]
    for r in ours:
        if r["anon_gib"] > MAX_ANON_GIB:
            failures.append(f"ours {r['step']} at {r['layers']} layers: RssAnon {r['anon_gib']:.2f} GiB "
                            f"> {MAX_ANON_GIB}")
        if r["extra_gib"] * 2**30 > DISK_SLACK:
            failures.append(f"ours {r['step']} at {r['layers']} layers: {r['extra_gib']:.2f} GiB of extra disk")
    for t in {r.get("type") for r in ours}:
        deep = [r["anon_gib"] for r in ours if r.get("type") == t and r["model"] != "tiny"]
        if len(deep) >= 2 and max(deep) - min(deep) > FLAT_TOLERANCE_GIB:
            failures.append(f"ours {t}: RssAnon not flat in depth ({min(deep):.2f}..{max(deep):.2f} GiB)")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--types", nargs="+", default=["q4_k_m", "f16"])
    parser.add_argument("--quick", action="store_true", help="tiny model, ours only (no peer, no network)")
    parser.add_argument("--no-peer", action="store_true", help="skip llama.cpp's pipeline")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for both quantizers (ours uses os.cpu_count() too)")
    parser.add_argument("--profile", type=int, metavar="LAYERS", help="cProfile ours (q4_k_m) and exit")
    parser.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    opts = parser.parse_args()
    if opts.profile:
        profile(opts.profile, "q4_k_m")
        return 0
    with_peer = not (opts.quick or opts.no_peer)
    if with_peer:
        peer.ensure_sources(allow_download=True)
    CACHE.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="convert-") as tmp:
        work = Path(tmp)
        rows += run_depth("tiny", None, opts.types, work, with_peer, True, opts.threads)
        if not opts.quick:
            for i, n in enumerate(opts.layers):
                rows += run_depth("xgen-7b-8k", n, opts.types, work, with_peer, i % 2 == 1, opts.threads)
    detail = table(rows)
    floors = {} if opts.quick else quantize_floor(opts.layers, "q4_k_m", opts.threads)
    side, failures = compare(rows, floors)
    failures += check_memory_disk(rows)
    print(detail)
    print()
    print(side)
    if opts.record:
        append_results("Conversion: ours vs llama.cpp's convert_hf_to_gguf + quantize, `python -m bench.bench_convert`",
                       detail + "\n\n" + side)
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("all conversion targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
