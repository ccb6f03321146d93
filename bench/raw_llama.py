"""Greedy generation through llama-cpp-python's own `Llama.generate`: the raw side that the
benchmarks measure xgen's engine and builds against."""

from __future__ import annotations

import time

EOS = 50256


def raw_generate(llm, prompt: list[int], n_gen: int) -> dict:
    """Evaluate `prompt` (in the Llama's n_batch chunks) and generate up to `n_gen` tokens.

    prompt speed = prompt tokens / time to the first token; generation speed = (tokens - 1)
    / time after it; total_s = the whole call.
    """
    started = time.perf_counter()
    first = None
    count = 0
    for token in llm.generate(prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
        if token == EOS:
            break
        count += 1
        if count == 1:
            first = time.perf_counter()
        if count >= n_gen:
            break
    end = time.perf_counter()
    return {"total_s": end - started,
            "prompt_tps": len(prompt) / (first - started) if first else 0.0,
            "gen_tps": (count - 1) / (end - first) if first and count > 1 else 0.0,
            "generated": count, "evaluated": len(prompt)}
