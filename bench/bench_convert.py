"""Conversion cost: wall time, peak memory and extra disk of `xgen convert`.

Synthetic checkpoints with XGen-7B's real tensor shapes (4096 / 11008 / 51200, fp32
`.bin` shards) at a few depths show whether memory grows with depth; the tiny model is
the tests' one. Run from the repo root:

    .venv/bin/python bench/bench_convert.py --layers 2 4 --types f16 q4_k_m
    .venv/bin/python bench/bench_convert.py --quick      # tiny model only, seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory import measure  # noqa: E402
from models.config import TRANSFORMER_CONFIGS  # noqa: E402
from models.synthetic import write_checkpoint  # noqa: E402

# Targets (issue: conversion): anonymous memory flat in depth and at most 1 GiB.
MAX_ANON_GIB = 1.0


def run(args_name: str, n_layers: int | None, file_types: list[str], work: Path) -> list[dict]:
    model_args = TRANSFORMER_CONFIGS[args_name]
    if n_layers is not None:
        model_args = replace(model_args, n_layers=n_layers)
    src = work / f"{args_name}-{model_args.n_layers}L"
    write_checkpoint(src, model_args, n_shards=2, seed=0)
    rows = []
    for file_type in file_types:
        out_dir = work / "out"
        out_dir.mkdir(exist_ok=True)
        out = out_dir / f"{src.name}-{file_type}.gguf"
        cmd = [sys.executable, "-m", "assistant.cli", "convert", str(src), "--out", str(out),
               "--type", file_type, "--force"]
        stats = measure(cmd, watch=out_dir)
        rows.append({
            "model": args_name, "layers": model_args.n_layers, "type": file_type,
            "seconds": stats.seconds, "anon_gib": stats.peak_anon_kib / 2**20,
            "rss_gib": stats.peak_rss_kib / 2**20, "disk_gib": stats.peak_disk_bytes / 2**30,
            "out_gib": out.stat().st_size / 2**30,
        })
        out.unlink()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--types", nargs="+", default=["f16", "q4_k_m"])
    parser.add_argument("--quick", action="store_true", help="tiny model only")
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        work = Path(tmp)
        rows += run("tiny", None, opts.types, work)
        if not opts.quick:
            for n in opts.layers:
                rows += run("xgen-7b-8k", n, opts.types, work)
                for p in work.glob("xgen-7b-8k-*L"):
                    for f in p.iterdir():
                        f.unlink()
    print("| model | layers | type | time s | peak RssAnon GiB | peak VmRSS GiB | peak disk GiB | output GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['layers']} | {r['type']} | {r['seconds']:.1f} | {r['anon_gib']:.2f} | "
              f"{r['rss_gib']:.2f} | {r['disk_gib']:.2f} | {r['out_gib']:.2f} |")
    failed = [r for r in rows if r["anon_gib"] > MAX_ANON_GIB]
    if failed:
        print(f"FAILED: peak anonymous memory above {MAX_ANON_GIB} GiB: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
