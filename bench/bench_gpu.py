"""GPU decode speed of the PyTorch engine (bf16): measured on CUDA, a paper estimate without.

Decoding one token reads every weight once (all but the token embedding, of which one
row is read) plus the whole KV cache so far, so decode speed is bounded by
memory bandwidth / bytes per token. Plan: TorchEngine at >= 60% of that bound.

With CUDA (`torch.cuda.is_available()`): a 7B-shaped bf16 model (random weights, from a
synthetic fp32 checkpoint in bench/.cache, ~27 GB on disk) is decoded greedily by
`assistant.engines.torch_engine.TorchEngine` and by transformers' `generate` (same
prompt, same number of new tokens, repetitions interleaved when both fit on the GPU);
device bandwidth is measured with a bf16 `sum` over 2 GiB. Exits 1 (FAILED) when
TorchEngine is below 60% of the bound.

Without CUDA: prints the paper estimate for a few GPUs and "no GPU: skipped", exit 0.

    .venv/bin/python -m bench.bench_gpu
    .venv/bin/python -m bench.bench_gpu --quick     # same on CPU machines; on CUDA: 64 new tokens, 2 reps
"""

from __future__ import annotations

import argparse
import time

from bench.report import append_results, median
from models.config import TRANSFORMER_CONFIGS, ModelArgs

TARGET_FRACTION = 0.60
# Datasheet peak memory bandwidth, bytes/s.
GPUS = {
    "A100 80GB SXM (HBM2e)": 2.0e12,
    "H100 SXM (HBM3)": 3.35e12,
    "RTX 4090 (GDDR6X)": 1.0e12,
    "L4 (GDDR6)": 0.3e12,
}


def weight_bytes(args: ModelArgs, bytes_per_param: int = 2) -> tuple[int, int]:
    """(bytes read per decoded token, bytes of all weights) in bf16."""
    kv = args.n_kv_heads * args.head_dim
    per_layer = (args.dim * args.dim * 2 + args.dim * kv * 2 + 3 * args.dim * args.intermediate_size
                 + 2 * args.dim)
    embed = args.vocab_size * args.dim
    output = 0 if args.tie_word_embeddings else args.vocab_size * args.dim
    total = embed + output + args.n_layers * per_layer + args.dim
    per_token = total - embed + args.dim  # one embedding row
    return per_token * bytes_per_param, total * bytes_per_param


def kv_bytes_per_token(args: ModelArgs, bytes_per_value: int = 2) -> int:
    return 2 * args.n_layers * args.n_kv_heads * args.head_dim * bytes_per_value


def paper_estimate(args: ModelArgs) -> str:
    per_token, total = weight_bytes(args)
    kv = kv_bytes_per_token(args)
    ctx = args.max_seq_len
    lines = [
        f"XGen-7B in bf16: {total / 1e9:.2f} GB of weights, {per_token / 1e9:.2f} GB read per decoded token "
        f"(all but the embedding table); KV cache {kv // 1024} KiB per token in bf16/f16, "
        f"{kv * ctx / 2**30:.1f} GiB at {ctx} tokens, all of it read by each decode step at full context.",
        "",
        "| GPU | bandwidth TB/s | bound tok/s, short context | 60% target tok/s | bound tok/s at 8K context "
        "| 60% target at 8K |",
        "|---|---|---|---|---|---|",
    ]
    for name, bw in GPUS.items():
        short = bw / per_token
        full = bw / (per_token + kv * ctx)
        lines.append(f"| {name} | {bw / 1e12:.2f} | {short:.0f} | {TARGET_FRACTION * short:.0f} | {full:.0f} | "
                     f"{TARGET_FRACTION * full:.0f} |")
    return "\n".join(lines)


def cuda_bandwidth(torch, gib: float = 2.0, repeat: int = 10) -> float:
    x = torch.ones(int(gib * 2**30) // 2, dtype=torch.bfloat16, device="cuda")
    best = 0.0
    for _ in range(repeat):
        torch.cuda.synchronize()
        t = time.perf_counter()
        x.sum()
        torch.cuda.synchronize()
        best = max(best, x.numel() * 2 / (time.perf_counter() - t))
    del x
    return best


def run_cuda(opts) -> int:  # pragma: no cover - needs a GPU
    import torch

    from assistant.engines.base import SamplingSettings
    from assistant.engines.torch_engine import TorchEngine
    from bench.models import checkpoint

    args = TRANSFORMER_CONFIGS["xgen-7b-8k"]
    per_token, _ = weight_bytes(args)
    folder = checkpoint("xgen-7b-8k")
    n_new = 64 if opts.quick else opts.gen
    reps = 2 if opts.quick else opts.repeat
    prompt = [1000 + i for i in range(opts.prompt)]
    bw = cuda_bandwidth(torch)
    n_ctx = opts.prompt + n_new + 8

    def load_ours():
        return TorchEngine(folder, device="cuda", dtype="bfloat16", n_ctx=n_ctx, compile=opts.compile)

    def load_hf():
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).to("cuda").eval()

    def time_ours(engine, i: int) -> float:  # a different first token each time: no KV reuse
        c = engine.generate([p + i for p in prompt], SamplingSettings.greedy(n_new))
        return c.stats.tokens_per_second

    def time_hf(model, i: int) -> float:
        ids = torch.tensor([[p + i for p in prompt]], device="cuda")
        kw = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
        torch.cuda.synchronize()
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
        torch.cuda.synchronize()
        first = time.perf_counter() - t
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=n_new, min_new_tokens=n_new, **kw)
        torch.cuda.synchronize()
        return (n_new - 1) / (time.perf_counter() - t - first)

    both_fit = torch.cuda.get_device_properties(0).total_memory > 2.3 * weight_bytes(args)[1]
    ours_tps, hf_tps = [], []
    if both_fit:
        engine, hf = load_ours(), load_hf()
        time_ours(engine, 0), time_hf(hf, 0)  # warm-up
        for i in range(1, reps + 1):
            if i % 2:
                ours_tps.append(time_ours(engine, i)), hf_tps.append(time_hf(hf, i))
            else:
                hf_tps.append(time_hf(hf, i)), ours_tps.append(time_ours(engine, i))
        engine.close()
        del hf
    else:  # one model at a time
        engine = load_ours()
        time_ours(engine, 0)
        ours_tps = [time_ours(engine, i) for i in range(1, reps + 1)]
        engine.close()
        del engine
        torch.cuda.empty_cache()
        hf = load_hf()
        time_hf(hf, 0)
        hf_tps = [time_hf(hf, i) for i in range(1, reps + 1)]
        del hf
    bound = bw / per_token
    o, h = median(ours_tps), median(hf_tps)
    text = "\n".join([
        f"{torch.cuda.get_device_name(0)}, measured bandwidth {bw / 1e12:.2f} TB/s, bound {bound:.0f} tok/s "
        f"({per_token / 1e9:.2f} GB per token), prompt {opts.prompt} tokens, {n_new} new tokens, {reps} reps, "
        f"{'interleaved' if both_fit else 'one model at a time'}.", "",
        "| engine | decode tok/s (median) | fraction of bound |", "|---|---|---|",
        f"| ours: TorchEngine bf16 | {o:.1f} | {o / bound:.0%} |",
        f"| peer: transformers generate bf16 | {h:.1f} | {h / bound:.0%} |",
        "", f"ours / transformers: {o / h:.2f}"])
    print(text)
    if opts.record:
        append_results("GPU decode speed, `python -m bench.bench_gpu`", text)
    if o < TARGET_FRACTION * bound:
        print(f"FAILED: TorchEngine decodes at {o:.1f} tok/s, below {TARGET_FRACTION:.0%} of the bound "
              f"({TARGET_FRACTION * bound:.0f} tok/s)")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--gen", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="TorchEngine(compile=True): CUDA graphs")
    parser.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    opts = parser.parse_args()
    import torch

    if torch.cuda.is_available():
        return run_cuda(opts)
    text = paper_estimate(TRANSFORMER_CONFIGS["xgen-7b-8k"])
    print(text)
    if opts.record:
        append_results("GPU decode speed plan (paper estimate, no GPU here), `python -m bench.bench_gpu`", text)
    print("no GPU: skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
