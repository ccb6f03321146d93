"""Memory of a loaded model with a full 8K context, and the quality cost of a q8_0 KV cache.

Memory: each configuration runs in its own subprocess, which opens the 7B-shaped
Q4_K_M GGUF with `LlamaEngine(n_ctx=8192, kv_type=...)` and fills the context with
~8000 prompt tokens (`generate(prompt, greedy(1))`). The parent samples the child's
RssAnon and VmRSS (bench/memory.py); the child also reports its own VmHWM (exact peak
VmRSS). Configurations: f16 KV (engine default: no flash attention), f16 KV with flash
attention, q8_0 KV (the engine turns flash attention on: llama.cpp needs it for a
quantized V cache). Peer column: raw llama-cpp-python `Llama(...)` with the same
settings, filled with the same tokens through `Llama.eval`.

Target: one of our configurations fits 8 GB (8e9 bytes). Peak VmRSS overstates it:
llama.cpp copies most Q4_K weights into a repacked anonymous buffer at load, and the
memory-mapped file pages it no longer reads stay resident while memory is free. So with
`--limit-gb 8` the quantized-KV configuration runs inside a memory cgroup of 8 GB
(anonymous memory and page cache together, model file evicted from the cache first,
bench/cgroup.py): it fits if it completes with no OOM kill and few major faults (no
thrashing). Without a limit the criterion is peak VmRSS. RssAnon is reported beside it.

Quality: on the tiny model (f32 weights, so only the KV cache differs) the logits of
every position of a real-text prompt (llama-cpp-python `logits_all=True`) with a q8_0
KV cache are compared with an f16 KV cache: NMSE = ||q8 - f16||^2 / ||f16||^2 and top-1
agreement. Full mode repeats it on the "small" model at ~8000 tokens.

    .venv/bin/python -m bench.bench_memory --no-peer --limit-gb 8   # 7B shapes, q8_0 run inside 8 GB (root)
    .venv/bin/python -m bench.bench_memory            # 7B shapes (uses bench/.cache/xgen-7b-8k-32L-q4_k_m.gguf)
    .venv/bin/python -m bench.bench_memory --quick    # "small" shapes only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.cgroup import MemoryLimit, available, evict_from_page_cache
from bench.memory import measure
from bench.models import gguf, q4_k_m_gguf
from bench.report import append_results, kib_to_gib
from models.llama_cpp_utils import import_llama_cpp

TARGET_BYTES = 8e9
N_CTX = 8192
KV_F16, KV_Q8_0 = 1, 8  # GGML_TYPE_F16, GGML_TYPE_Q8_0
CONFIGS = {  # name -> (kv_type, flash_attn)
    "f16 KV": ("f16", False),
    "f16 KV + flash attention": ("f16", True),
    "q8_0 KV (+ flash attention)": ("q8_0", True),
}
REPO = Path(__file__).resolve().parents[1]
RUNS = Path(__file__).resolve().parent / ".cache" / "memory-runs"  # per-run results, for --resume


def _proc_status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def child(model: str, kv: str, flash: bool, n_fill: int, side: str, result: str) -> None:
    """Load, fill the context, report (runs in the measured subprocess)."""
    rng = random.Random(1)
    prompt = [rng.randrange(256, 50000) for _ in range(n_fill)]
    loaded_at = time.perf_counter()
    if side == "ours":
        from assistant.engines.base import SamplingSettings
        from assistant.engines.llama import LlamaEngine

        engine = LlamaEngine(model, n_ctx=N_CTX, kv_type=kv, flash_attn=flash)
        after_load = _proc_status()
        t = time.perf_counter()
        c = engine.generate(prompt, SamplingSettings.greedy(1))
        evaluated = c.stats.prompt_evaluated
    else:
        llama_cpp = import_llama_cpp()
        type_kv = KV_F16 if kv == "f16" else KV_Q8_0
        threads = os.cpu_count() or 1
        llm = llama_cpp.Llama(model_path=model, n_ctx=N_CTX, n_batch=256, n_ubatch=256, n_threads=threads,
                              n_threads_batch=threads, flash_attn=flash or type_kv != KV_F16, type_k=type_kv,
                              type_v=type_kv, logits_all=False, verbose=False)
        after_load = _proc_status()
        t = time.perf_counter()
        llm.eval(prompt)
        evaluated = llm.n_tokens
    seconds = time.perf_counter() - t
    end = _proc_status()
    Path(result).write_text(json.dumps({"after_load": after_load, "end": end, "prompt_seconds": seconds,
                                        "evaluated": evaluated, "load_seconds": t - loaded_at}))


def measure_config(model: Path, name: str, side: str, n_fill: int, work: Path, resume: bool = False,
                   limit_bytes: float | None = None) -> dict:
    kv, flash = CONFIGS[name]
    limit_tag = f"-limit{int(limit_bytes)}" if limit_bytes else ""
    saved = RUNS / f"{model.stem}-{side}-{kv}-{'fa' if flash else 'nofa'}-{n_fill}{limit_tag}.json"
    if resume and saved.is_file():
        return json.loads(saved.read_text())
    result = work / f"{side}-{kv}-{flash}.json"
    cmd = [sys.executable, "-m", "bench.bench_memory", "--child", str(model), kv, str(int(flash)), str(n_fill), side,
           str(result)]
    cgroup = {}
    if limit_bytes:
        evict_from_page_cache(model)  # so the child's reads of it are charged to its cgroup
        with MemoryLimit(limit_bytes) as limit:
            stats = measure(cmd, preexec_fn=limit.enter, check=False)
            cgroup = limit.stats() | {"limit_bytes": int(limit_bytes), "returncode": stats.returncode}
        if stats.returncode != 0:  # killed by the OOM killer: the configuration does not fit
            row = {"config": name, "side": side, "seconds": stats.seconds, "cgroup": cgroup, "failed": True,
                   "anon_gib": kib_to_gib(stats.peak_anon_kib), "rss_gib": kib_to_gib(stats.peak_rss_kib)}
            RUNS.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(row))
            return row
    else:
        stats = measure(cmd)
    info = json.loads(result.read_text())
    row = {"config": name, "side": side, "seconds": stats.seconds, "cgroup": cgroup,
           "anon_gib": kib_to_gib(stats.peak_anon_kib), "rss_gib": kib_to_gib(stats.peak_rss_kib),
           "hwm_gib": kib_to_gib(info["end"]["VmHWM"]), "hwm_bytes": info["end"]["VmHWM"] * 1024,
           "load_rss_gib": kib_to_gib(info["after_load"]["VmRSS"]),
           "load_anon_gib": kib_to_gib(info["after_load"]["RssAnon"]),
           "evaluated": info["evaluated"], "prompt_tps": info["evaluated"] / info["prompt_seconds"]}
    RUNS.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(row))
    return row


def corpus_ids(llm, n: int) -> list[int]:
    """n token ids of real text (the repo's Markdown and Python sources, repeated if short)."""
    text = "\n\n".join(p.read_text(errors="replace") for p in sorted(REPO.glob("*.md")) + sorted(
        (REPO / "assistant").glob("*.py")) + sorted((REPO / "models").glob("*.py")))
    ids = list(llm.tokenize(text.encode(), add_bos=False, special=False))
    while len(ids) < n:
        ids += ids
    return ids[:n]


def kv_quality(model: Path, n_ctx: int, n_tokens: int) -> list[dict]:
    """Logits of q8_0 KV (and f16 KV + flash attention) against f16 KV, every position."""
    from converter.verify import nmse

    llama_cpp = import_llama_cpp()

    threads = os.cpu_count() or 1
    logits = {}
    ids = None
    for name, (kv, flash) in CONFIGS.items():
        type_kv = KV_F16 if kv == "f16" else KV_Q8_0
        llm = llama_cpp.Llama(model_path=str(model), n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=threads,
                              n_threads_batch=threads, flash_attn=flash, type_k=type_kv, type_v=type_kv,
                              logits_all=True, verbose=False)
        if ids is None:
            ids = corpus_ids(llm, n_tokens)
        llm.eval(ids)
        logits[name] = llm.scores[: len(ids)].copy()
        llm.close()
    ref = logits["f16 KV"]
    rows = []
    for name in list(CONFIGS)[1:]:
        test = logits[name]
        top1 = float((test.argmax(-1) == ref.argmax(-1)).mean())
        rows.append({"model": model.name, "tokens": len(ids), "config": name, "nmse": nmse(test, ref), "top1": top1})
    return rows


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, model, kv, flash, n_fill, side, result = sys.argv
        child(model, kv, flash == "1", int(n_fill), side, result)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small shapes only")
    parser.add_argument("--fill", type=int, default=8000, help="prompt tokens put in the 8K context")
    parser.add_argument("--no-peer", action="store_true", help="skip raw llama-cpp-python")
    parser.add_argument("--resume", action="store_true", help="reuse runs saved in bench/.cache/memory-runs")
    parser.add_argument("--all-configs", action="store_true", help="also f16 KV with flash attention")
    parser.add_argument("--model", type=Path, help="a GGUF to use instead of the synthetic 7B one")
    parser.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    parser.add_argument("--limit-gb", type=float, metavar="GB",
                        help="run the q8_0 configuration (the one meant to fit) inside a memory cgroup of GB "
                             "gigabytes (1e9 bytes): it must complete without an OOM kill")
    opts = parser.parse_args()
    if opts.limit_gb:
        why = available()
        if why:
            parser.error(f"--limit-gb: {why}")
    model = q4_k_m_gguf(opts.model, opts.quick)
    fill = min(opts.fill, 2000) if opts.quick else opts.fill  # quick: a smoke test of the pipeline
    configs = ["f16 KV", "q8_0 KV (+ flash attention)"]
    if opts.all_configs:
        configs.insert(1, "f16 KV + flash attention")
    sides = ["ours"] if (opts.quick or opts.no_peer) else ["ours", "peer"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(configs):
            limit = opts.limit_gb * 1e9 if opts.limit_gb and CONFIGS[name][0] != "f16" else None
            for side in (sides if i % 2 == 0 else sides[::-1]):  # interleaved, order alternating
                rows.append(measure_config(model, name, side, fill, Path(tmp), opts.resume, limit))
                r = rows[-1]
                if r.get("failed"):
                    print(f"  {side} {name}: killed under the {opts.limit_gb} GB limit {r['cgroup']}", flush=True)
                else:
                    print(f"  {side} {name}: VmHWM {r['hwm_gib']:.2f} GiB, RssAnon {r['anon_gib']:.2f} GiB, "
                          f"prompt {r['prompt_tps']:.1f} tok/s, cgroup {r.get('cgroup') or '-'}", flush=True)

    quality = kv_quality(gguf("tiny", "f32"), 512, 500)
    if not opts.quick:
        quality += kv_quality(gguf("small", "f32"), N_CTX, opts.fill)

    lines = [f"Model `{model.name}` ({model.stat().st_size / 1e9:.2f} GB), n_ctx {N_CTX}, {fill} prompt tokens "
             f"evaluated, n_batch 256, {os.cpu_count()} threads; each row is a fresh subprocess.", "",
             "| KV cache | side | memory limit | peak VmRSS GiB (VmHWM) | peak VmRSS GB | peak RssAnon GiB "
             "| VmRSS after load GiB | RssAnon after load GiB | cgroup peak GB (anon + page cache) | major faults "
             "| prompt tok/s | fits 8 GB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cg = r.get("cgroup") or {}
        limit = f"{cg['limit_bytes'] / 1e9:.1f} GB" if cg else "none"
        if r.get("failed"):
            lines.append(f"| {r['config']} | {r['side']} | {limit} | - | - | {r['anon_gib']:.2f} | - | - | "
                         f"{cg['peak_bytes'] / 1e9:.2f} | {cg.get('major_faults', '-')} | "
                         f"killed (OOM kills {cg['oom_kills']}) | no |")
            continue
        cg_peak = f"{cg['peak_bytes'] / 1e9:.2f} | {cg.get('major_faults', '-')}" if cg else "- | -"
        lines.append(f"| {r['config']} | {r['side']} | {limit} | {r['hwm_gib']:.2f} | {r['hwm_bytes'] / 1e9:.2f} | "
                     f"{r['anon_gib']:.2f} | {r['load_rss_gib']:.2f} | {r['load_anon_gib']:.2f} | {cg_peak} | "
                     f"{r['prompt_tps']:.1f} | {'yes' if fits(r) else 'no'} |")
    lines += ["", "KV cache quality: logits of every prompt position against the f16 KV cache "
              "(f32 weights, llama-cpp-python logits_all).", "",
              "| model | tokens | KV cache | logits NMSE vs f16 KV | top-1 agreement |", "|---|---|---|---|---|"]
    for q in quality:
        lines.append(f"| {q['model']} | {q['tokens']} | {q['config']} | {q['nmse']:.2e} | {q['top1']:.4f} |")
    text = "\n".join(lines)
    print(text)
    if opts.record:
        append_results("Memory at 8K context and q8_0 KV quality, `python -m bench.bench_memory`", text)
    fitting = [r for r in rows if r["side"] == "ours" and fits(r)]
    if not fitting:
        print(f"FAILED: no configuration of ours fits {TARGET_BYTES / 1e9:.0f} GB (peak VmRSS, or a run inside a "
              "memory cgroup of that size)")
        return 1
    print("memory target met: " + ", ".join(r["config"] for r in fitting))
    return 0


def fits(row: dict) -> bool:
    """Under the target: completed inside a cgroup no larger than it, or peak VmRSS below it."""
    if row.get("failed"):
        return False
    cg = row.get("cgroup") or {}
    if cg and cg["limit_bytes"] <= TARGET_BYTES and cg["oom_kills"] == 0:
        return True
    return row["hwm_bytes"] < TARGET_BYTES


if __name__ == "__main__":
    raise SystemExit(main())
