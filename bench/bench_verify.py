"""Memory of `xgen verify --reference`: the layer-by-layer reference against the whole model.

Synthetic checkpoints with XGen-7B's real tensor shapes (4096 / 11008 / 51200, fp32
`.bin` shards) at 2, 4 and 8 layers, each converted to q8_0. For each depth, each step
in its own process (wall time, peak RssAnon and VmRSS from bench/memory.py):

- streamed: the reference logits verify uses (models.streamed.reference_logits) for
  verify's three prompts, one layer at a time from the memory-mapped shards;
- verify: the whole command, `xgen verify FILE.gguf --reference CHECKPOINT` (llama.cpp
  on the GGUF plus the streamed reference), and its verdict;
- whole (2 layers only, for contrast): the old path, models.xgen.build_model +
  models.hf_weights.load_hf_weights and a forward per prompt, which holds every weight in fp32.

Target (issue 11, point 3): peak RssAnon of the reference and of `xgen verify` flat in
depth (max - min <= 0.1 GiB) and <= 2 GiB. Run from the repo root:

    .venv/bin/python -m bench.bench_verify --record     # 2, 4, 8 layers; appends to RESULTS.md
    .venv/bin/python -m bench.bench_verify --quick      # tiny model (CI smoke test)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.memory import measure
from bench.report import append_results, kib_to_gib
from models.config import TRANSFORMER_CONFIGS

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).resolve().parent / ".cache"
SHARED_R50K = REPO.parent / "shared" / "data" / "r50k_base.tiktoken"
R50K_CACHE_NAME = "0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4"
MAX_ANON_GIB = 2.0
FLAT_TOLERANCE_GIB = 0.1
WHOLE_MODEL_LAYERS = 2  # the old path holds every weight; measured only here, for contrast
FILE_TYPE = "q8_0"


# -- the measured steps (run as children of this script) ------------------------------


def _prompt_ids() -> list[list[int]]:
    from converter.verify import LOGIT_PROMPTS
    from models.tokenizer import XGenTokenizer

    tokenizer = XGenTokenizer(allow_download=False)
    return [tokenizer.encode(p) for p in LOGIT_PROMPTS]


def child(mode: str, checkpoint: str) -> None:
    import torch

    ids = _prompt_ids()
    started = time.perf_counter()
    if mode == "streamed":
        from models.streamed import reference_logits

        logits = reference_logits(checkpoint, ids)
    else:
        from models.checkpoint import CheckpointReader, find_checkpoint
        from models.config import ModelArgs
        from models.hf_weights import load_hf_weights
        from models.xgen import build_model

        model = build_model(ModelArgs.from_folder(checkpoint))
        load_hf_weights(model, CheckpointReader(find_checkpoint(checkpoint)))
        with torch.inference_mode():
            logits = [model(torch.tensor([x]))[0] for x in ids]
    print(f"{mode}: {sum(len(x) for x in ids)} tokens, {time.perf_counter() - started:.1f} s, "
          f"checksum {sum(float(t.double().sum()) for t in logits):.6e}")


# -- the benchmark --------------------------------------------------------------------


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if "TIKTOKEN_CACHE_DIR" not in env:  # the GPT-2 ranks, offline (see ../shared/XGEN.md)
        cache = CACHE / "tiktoken"
        cache.mkdir(parents=True, exist_ok=True)
        if not (cache / R50K_CACHE_NAME).is_file() and SHARED_R50K.is_file():
            shutil.copyfile(SHARED_R50K, cache / R50K_CACHE_NAME)
        env["TIKTOKEN_CACHE_DIR"] = str(cache)
    return env


def run_depth(model: str, n_layers: int | None, work: Path, with_whole: bool) -> list[dict]:
    from converter.convert import convert
    from models.synthetic import write_checkpoint

    args = TRANSFORMER_CONFIGS[model]
    if n_layers is not None:
        args = replace(args, n_layers=n_layers)
    src = write_checkpoint(work / f"{model}-{args.n_layers}L", args, n_shards=2, seed=0)
    gguf = convert(src, work / f"{model}-{args.n_layers}L-{FILE_TYPE}.gguf", FILE_TYPE).path
    env = bench_env()
    steps = {
        "streamed": [sys.executable, "-m", "bench.bench_verify", "--child", "streamed", str(src)],
        "verify": [sys.executable, "-m", "assistant.cli", "verify", str(gguf), "--reference", str(src)],
    }
    if with_whole:
        steps["whole"] = [sys.executable, "-m", "bench.bench_verify", "--child", "whole", str(src)]
    rows = []
    for step, cmd in steps.items():
        stats = measure(cmd, env=env, check=step != "verify")
        rows.append({"step": step, "model": model, "layers": args.n_layers, "seconds": stats.seconds,
                     "anon_gib": kib_to_gib(stats.peak_anon_kib), "rss_gib": kib_to_gib(stats.peak_rss_kib),
                     "exit": stats.returncode})
        print(f"  {step} {model} {args.n_layers}L: {stats.seconds:.1f} s, RssAnon {rows[-1]['anon_gib']:.2f} GiB, "
              f"exit {stats.returncode}", flush=True)
    shutil.rmtree(src)
    gguf.unlink()
    return rows


STEP_NAMES = {
    "streamed": "reference logits, layer by layer (models.streamed)",
    "verify": f"`xgen verify {FILE_TYPE}.gguf --reference`, whole command",
    "whole": "old path: whole fp32 model (build_model + load_hf_weights)",
}


def table(rows: list[dict]) -> str:
    lines = ["| step | model | layers | time s | peak RssAnon GiB | peak VmRSS GiB | exit |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {STEP_NAMES[r['step']]} | {r['model']} | {r['layers']} | {r['seconds']:.1f} | "
                     f"{r['anon_gib']:.2f} | {r['rss_gib']:.2f} | {r['exit']} |")
    return "\n".join(lines)


def check(rows: list[dict]) -> list[str]:
    failures = []
    for r in rows:
        if r["step"] == "whole":
            continue
        if r["anon_gib"] > MAX_ANON_GIB:
            failures.append(f"{r['step']} at {r['layers']} layers: RssAnon {r['anon_gib']:.2f} GiB > {MAX_ANON_GIB}")
        if r["exit"] != 0:
            failures.append(f"{r['step']} at {r['layers']} layers exited {r['exit']}")
    for step in ("streamed", "verify"):
        deep = [r["anon_gib"] for r in rows if r["step"] == step and r["model"] != "tiny"]
        if len(deep) >= 2 and max(deep) - min(deep) > FLAT_TOLERANCE_GIB:
            failures.append(f"{step}: RssAnon not flat in depth ({min(deep):.2f}..{max(deep):.2f} GiB)")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--quick", action="store_true", help="tiny model only (CI smoke test)")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "CHECKPOINT"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        child(*opts.child)
        return 0
    CACHE.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="verify-") as tmp:
        if opts.quick:
            rows += run_depth("tiny", None, Path(tmp), with_whole=True)
        else:
            for n in opts.layers:
                rows += run_depth("xgen-7b-8k", n, Path(tmp), with_whole=n == WHOLE_MODEL_LAYERS)
    failures = check(rows)
    print(table(rows))
    if opts.record:
        append_results("Verify memory: layer-by-layer reference vs the whole model, `python -m bench.bench_verify`",
                       table(rows))
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("all verify targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
