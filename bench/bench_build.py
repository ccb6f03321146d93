"""Speed of the llama.cpp build setup.sh makes against an AVX2-only build, interleaved.

Issue 13: setup.sh used to build llama.cpp with `-DGGML_NATIVE=OFF`, which compiles the
CPU kernels for AVX2 only; it now builds for the widest safe SIMD level of the machine
(models/llama_build.py: AVX-512 with VNNI/BF16/VBMI where present, never AMX).

Worker processes, each importing a llama-cpp-python build, open the same GGUF
(memory-mapped, so they share the page cache, and locked in RAM so that other processes'
file I/O cannot evict it mid-run) with the same n_ctx, n_threads, n_batch = n_ubatch,
f16 KV cache, and wait for commands; each side is run as xgen runs it:

- "setup": the llama-cpp-python installed in this venv (what setup.sh built), weights laid
  out as xgen loads them (repacked, llama.cpp's default, unless XGEN_WEIGHT_REPACK=off);
- "setup-gguf": the same build with XGEN_WEIGHT_REPACK=off (weights in the GGUF layout,
  read by llama.cpp's tiled K-quant kernel), measured where that kernel has its
  AVX512-VNNI microkernel;
- "avx2": the same llama-cpp-python version built with CMAKE_ARGS=-DGGML_NATIVE=OFF
  (the old setup.sh), weights repacked (llama.cpp's default, as xgen ran it before), built
  once into setup.sh's wheel cache and unpacked into bench/.cache/site-<key>, put first on
  the worker's PYTHONPATH.

Each round draws a fresh random prompt and runs it on every worker, the order reversed
every other round, the idle workers stopped (SIGSTOP): raw `Llama.generate` (prompt
evaluated in n_batch chunks, greedy), prompt speed = prompt tokens / time to the first
token, generation speed = (tokens - 1) / time after it, request time = the whole call. A
worker that dies (say SIGSEGV on the first batched evaluation) is reported as a crash and
fails the run.

Targets (median of the paired ratios of "setup" against "avx2"): prompt >= 1.4x,
generation >= 0.97x (not slower, within the noise band of a shared 2-core machine), no
crash.

    .venv/bin/python -m bench.bench_build --record          # 7B shapes, builds the AVX2 baseline once
    .venv/bin/python -m bench.bench_build --quick           # small model, this build on both sides: plumbing smoke
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from bench.report import append_results, median
from models import llama_build

PROMPT_TARGET = 1.4
GEN_TARGET = 0.97
BASELINE_ARGS = ["-DGGML_NATIVE=OFF"]  # what setup.sh used before issue 13: AVX2 kernels


# ---------------------------------------------------------------- worker side


def worker() -> int:
    """Serve JSON commands on stdin: {"prompt": [...], "gen": N} -> speeds on stdout."""
    from bench.raw_llama import raw_generate
    from models.llama_cpp_utils import engine_info_line, import_llama_cpp, repack_weights, weight_repacking

    llama_cpp = import_llama_cpp()
    Llama = llama_cpp.Llama

    if sys.platform.startswith("linux"):
        # die with the parent: a worker left stopped (SIGSTOP) by a killed run would keep
        # its 7B weights locked in RAM
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    opts = json.loads(sys.stdin.readline())
    repack = repack_weights() if opts["repack"] is None else opts["repack"]
    with weight_repacking(repack):
        llm = Llama(model_path=opts["model"], n_ctx=opts["n_ctx"], n_batch=opts["batch"], n_ubatch=opts["batch"],
                    n_threads=opts["threads"], n_threads_batch=opts["threads"], n_gpu_layers=0,
                    flash_attn=False, logits_all=False, use_mlock=opts["mlock"], verbose=False)
    print(json.dumps({"ready": True, "file": llama_cpp.__file__, "engine": engine_info_line(),
                      "weights": "repacked" if repack else "GGUF layout"}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        print(json.dumps(raw_generate(llm, cmd["prompt"], cmd["gen"])), flush=True)
    return 0


# ---------------------------------------------------------------- parent side


class Crash(Exception):
    pass


class Worker:
    def __init__(self, name: str, site: Path | None, init: dict):
        self.name = name
        env = dict(os.environ)
        paths = ([str(site)] if site else []) + [str(REPO)]
        env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.bench_build", "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
        self.info = self.ask(init)

    def ask(self, message: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            why = f"signal {-code}" if code < 0 else f"exit {code}"
            raise Crash(f"{self.name} build crashed ({why})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def alone(sides: dict[str, Worker], name: str, command: dict) -> dict:
    """Run `command` on one worker with the other stopped (SIGSTOP): an idle llama.cpp
    process keeps its thread pool spinning for a while after each graph, which on two cores
    takes CPU from the worker being measured (it made the first runs' generation 5-15x
    slower than this model's usual speed on both sides)."""
    others = [w for n, w in sides.items() if n != name]
    for w in others:
        w.proc.send_signal(signal.SIGSTOP)
    try:
        return sides[name].ask(command)
    finally:
        for w in others:
            w.proc.send_signal(signal.SIGCONT)


def baseline_site(version: str) -> tuple[Path, str]:
    """Build (once, into setup.sh's wheel cache) and unpack the AVX2-only llama-cpp-python."""
    machine = llama_build.Machine.here()
    key = llama_build.cache_key(version, BASELINE_ARGS, machine, llama_build.python_tag())
    folder = llama_build.default_cache_dir() / key
    wheel = llama_build.cached_wheel(folder)
    if wheel is None:
        print(f"building the baseline llama-cpp-python {version} with CMAKE_ARGS={' '.join(BASELINE_ARGS)} "
              f"(several minutes, once; cached in {folder})", flush=True)
        wheel = llama_build.build_wheel(version, BASELINE_ARGS, folder, [sys.executable, "-m", "pip"])
    site = REPO / "bench" / ".cache" / f"site-{key}"
    if not (site / "llama_cpp").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                        str(wheel)], check=True)
    return site, " ".join(BASELINE_ARGS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true",
                        help="small model, this venv's build on both sides (plumbing and no-crash smoke)")
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens (default 256)")
    parser.add_argument("--gen", type=int, default=32, help="generated tokens (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=512, help="n_batch = n_ubatch")
    parser.add_argument("--model", type=Path, help="a GGUF instead of the synthetic 7B-shaped Q4_K_M")
    parser.add_argument("--baseline-site", type=Path,
                        help="a folder holding the baseline llama_cpp package (default: build the AVX2 one)")
    parser.add_argument("--no-mlock", action="store_true",
                        help="do not lock the weights in RAM (by default they are, so that other processes' file "
                             "I/O cannot evict the memory-mapped model mid-run on a shared machine)")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    opts = parser.parse_args()
    if opts.worker:
        return worker()

    from bench.models import q4_k_m_gguf
    from models.llama_cpp_utils import import_llama_cpp, repack_weights, tiled_kquant_kernel

    llama_cpp = import_llama_cpp()

    version = llama_cpp.__version__
    quick = opts.quick
    model = q4_k_m_gguf(opts.model, quick)
    build = llama_build.installed_build()
    setup_args = " ".join(build["cmake_args"]) if build else "(not recorded: not installed by setup.sh)"
    if quick:
        site, base_args = None, "(quick: the same build as setup)"
    elif opts.baseline_site:
        site, base_args = opts.baseline_site, f"(from {opts.baseline_site})"
    else:
        site, base_args = baseline_site(version)

    n_ctx = max(512, -(-(opts.prompt + opts.gen + 8) // 256) * 256)
    init = {"model": str(model), "n_ctx": n_ctx, "batch": opts.batch, "threads": opts.threads,
            "mlock": not opts.no_mlock}
    # (name, site, weight repacking): setup.sh's build as xgen runs it, the same build with
    # the XGEN_WEIGHT_REPACK=off opt-in where llama.cpp's tiled VNNI kernel makes it a
    # choice, and the old AVX2-only build with llama.cpp's default (as xgen ran it before)
    plan = [("setup", None, repack_weights()), ("avx2", site, True)]
    if tiled_kquant_kernel():
        plan.insert(1, ("setup-gguf", None, False))
    sides: dict[str, Worker] = {}
    results: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
    crashed = []
    try:
        for name, where, repack in plan:
            sides[name] = Worker(name, where, {**init, "repack": repack})
            print(f"  {name}: {sides[name].info['engine']}; weights {sides[name].info['weights']}\n"
                  f"    ({sides[name].info['file']})", flush=True)
        warm = [1000 + i for i in range(64)]
        for name in sides:
            alone(sides, name, {"prompt": warm, "gen": 4})
        rng = random.Random(0)
        for r in range(opts.rounds):
            prompt = [r + 1] + [rng.randrange(256, 50000) for _ in range(opts.prompt - 1)]
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                results[name].append(alone(sides, name, {"prompt": prompt, "gen": opts.gen}))
            print(f"  round {r + 1} ({order[0]} first): " + ", ".join(
                f"{name} prompt {results[name][-1]['prompt_tps']:.2f} gen {results[name][-1]['gen_tps']:.2f}"
                for name in sides) + " tok/s", flush=True)
    except Crash as exc:
        crashed.append(str(exc))
        print(f"CRASH: {exc}")
    finally:
        for w in sides.values():
            try:
                w.close()
            except Exception:  # noqa: BLE001 - a dead worker is already reported
                w.proc.kill()
    rounds = {len(v) for v in results.values()}
    if crashed or rounds != {opts.rounds}:
        print("FAILED: " + ("; ".join(crashed) or "no complete round"))
        return 1

    def ratios(name: str, key: str) -> list[float]:
        return [s[key] / a[key] for s, a in zip(results[name], results["avx2"])]

    def col(name: str, key: str) -> str:
        return " / ".join(f"{x[key]:.2f}" for x in results[name])

    label = {"setup": "setup.sh build, as xgen runs it", "setup-gguf": "setup.sh build, XGEN_WEIGHT_REPACK=off",
             "avx2": "AVX2-only build (the old setup.sh)"}
    prompt_ratio, gen_ratio = median(ratios("setup", "prompt_tps")), median(ratios("setup", "gen_tps"))
    lines = [
        f"Model `{model.name}` ({model.stat().st_size / 1e9:.2f} GB), llama-cpp-python {version}, n_ctx {n_ctx}, "
        f"n_threads {opts.threads}, n_batch = n_ubatch {opts.batch}, f16 KV cache, weights "
        f"{'memory-mapped' if opts.no_mlock else 'locked in RAM (mlock)'}, prompt {opts.prompt} tokens "
        f"(fresh random ids each round), {opts.gen} generated (greedy), {opts.rounds} interleaved rounds "
        f"(order alternating, the idle workers stopped); ratios to the AVX2-only build are medians of the "
        f"per-round ratios.",
        "",
        f"- setup.sh build: `CMAKE_ARGS={setup_args}`; {sides['setup'].info['engine']}",
        f"- baseline: `CMAKE_ARGS={base_args}`; {sides['avx2'].info['engine']}",
        "",
        "| side | weights | prompt tok/s, per round | x AVX2 (median) | generation tok/s, per round "
        "| x AVX2 (median) | request s (median) | x AVX2 (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in sides:
        p_r, g_r = ratios(name, "prompt_tps"), ratios(name, "gen_tps")
        lines.append(f"| {label[name]} | {sides[name].info['weights']} | {col(name, 'prompt_tps')} | "
                     f"{median(p_r):.2f} ({' / '.join(f'{x:.2f}' for x in p_r)}) | {col(name, 'gen_tps')} | "
                     f"{median(g_r):.2f} ({' / '.join(f'{x:.2f}' for x in g_r)}) | "
                     f"{median([x['total_s'] for x in results[name]]):.1f} | "
                     f"{median([a['total_s'] / x['total_s'] for x, a in zip(results[name], results['avx2'])]):.2f} |")
    lines += [
        "",
        ("Targets: (quick: none)" if quick else
         f"Targets (setup.sh build as xgen runs it, against the AVX2-only build): prompt >= {PROMPT_TARGET}x, "
         f"measured {prompt_ratio:.2f}x; generation >= {GEN_TARGET}x, measured {gen_ratio:.2f}x. Request time: the "
         f"whole prompt + generation; x AVX2 above 1 is faster."),
        f"No crash: {opts.rounds + 1} batched prompt evaluations (a 64-token warm-up and {opts.rounds} of "
        f"{opts.prompt} tokens) on each side completed.",
    ]
    text = "\n".join(lines)
    print(text)
    if opts.record:
        append_results("llama.cpp build: setup.sh's against AVX2-only, `python -m bench.bench_build`", text)
    if quick:
        print("build benchmark smoke passed (no crash)")
        return 0
    failed = [f"{name} ratio {v:.2f} < {t}" for name, v, t in
              (("prompt", prompt_ratio, PROMPT_TARGET), ("generation", gen_ratio, GEN_TARGET)) if v < t]
    if failed:
        print("FAILED: " + "; ".join(failed))
        return 1
    print("build targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
