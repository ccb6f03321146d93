"""Check a GGUF's hyper-parameters against each other and against its tensors' shapes.

llama.cpp trusts them: a block count of 1,000 with 6 layers of tensors aborts the process
(SIGABRT, no message), a NaN epsilon trips a GGML_ASSERT and then hangs, a context length
of 2^63 sends the memory planner into an endless loop. So every value llama.cpp reads for
an XGen (llama) model is checked here, by type, by range, and by what the tensors say,
before the file goes anywhere near it.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple, Sequence


class TensorInfo(NamedTuple):
    name: str
    dims: tuple[int, ...]  # GGUF order: dims[0] is the row length (ggml's ne[0])
    end: int  # offset in the file just past the tensor's data


# key -> (smallest, largest) allowed; the largest are far beyond any XGen (8K context,
# 4,096 wide, 32 layers) yet small enough that nothing sized by them can run away.
INT_KEYS = {
    "llama.context_length": (1, 1 << 20),
    "llama.embedding_length": (1, 1 << 16),
    "llama.block_count": (1, 1024),
    "llama.feed_forward_length": (1, 1 << 18),
    "llama.attention.head_count": (1, 1024),
    "llama.attention.head_count_kv": (1, 1024),
    "llama.rope.dimension_count": (2, 1 << 16),
    "llama.vocab_size": (1, 1 << 22),
    "general.file_type": (0, 1023),
}
REQUIRED = ("llama.context_length", "llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
            "llama.attention.head_count", "llama.attention.layer_norm_rms_epsilon")
FLOAT_KEYS = {
    "llama.attention.layer_norm_rms_epsilon": (0.0, 1.0),  # exclusive bounds
    "llama.rope.freq_base": (0.0, 1e12),
}
TOKEN_ID_KEYS = ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                 "tokenizer.ggml.padding_token_id", "tokenizer.ggml.seperator_token_id")
LAYER_TENSOR = re.compile(r"blk\.(\d+)\.")


def _typed_value_problem(meta: dict) -> str | None:
    for key in REQUIRED:
        if key not in meta:
            return f"{key} is missing"
    for key, (low, high) in INT_KEYS.items():
        if key in meta:
            value = meta[key]
            # bool is an int in Python, not in GGUF: a flag where a count belongs is damage.
            if type(value) is not int:
                return f"{key} is {value!r}, not a whole number"
            if not low <= value <= high:
                return f"{key} is {value:,}, outside {low:,}-{high:,}"
    for key, (low, high) in FLOAT_KEYS.items():
        if key in meta:
            value = meta[key]
            if type(value) not in (int, float) or not math.isfinite(value) or not low < value < high:
                return f"{key} is {value!r}, not a number between {low:g} and {high:g}"
    return None


def _shape_problem(meta: dict, tensors: Sequence[TensorInfo], n_tokens: int) -> str | None:
    n_embd = meta["llama.embedding_length"]
    n_head = meta["llama.attention.head_count"]
    n_head_kv = meta.get("llama.attention.head_count_kv", n_head)
    n_ff = meta["llama.feed_forward_length"]
    n_layers = meta["llama.block_count"]
    if n_embd % n_head or n_head % n_head_kv:
        return f"{n_head} heads ({n_head_kv} for keys and values) do not divide a width of {n_embd}"
    head_dim = n_embd // n_head
    rope = meta.get("llama.rope.dimension_count", head_dim)
    if rope > head_dim or rope % 2:
        return f"llama.rope.dimension_count is {rope}, for heads of {head_dim}"
    if meta.get("llama.vocab_size", n_tokens) != n_tokens:
        return f"llama.vocab_size is {meta['llama.vocab_size']:,} but the vocabulary holds {n_tokens:,} tokens"
    kv = n_head_kv * head_dim
    expected = {"token_embd.weight": (n_embd, n_tokens), "output_norm.weight": (n_embd,)}
    for i in range(n_layers):
        expected |= {
            f"blk.{i}.attn_norm.weight": (n_embd,), f"blk.{i}.ffn_norm.weight": (n_embd,),
            f"blk.{i}.attn_q.weight": (n_embd, n_embd), f"blk.{i}.attn_output.weight": (n_embd, n_embd),
            f"blk.{i}.attn_k.weight": (n_embd, kv), f"blk.{i}.attn_v.weight": (n_embd, kv),
            f"blk.{i}.ffn_gate.weight": (n_embd, n_ff), f"blk.{i}.ffn_up.weight": (n_embd, n_ff),
            f"blk.{i}.ffn_down.weight": (n_ff, n_embd),
        }
    shapes = {t.name: t.dims for t in tensors}
    layers = {int(m.group(1)) for name in shapes if (m := LAYER_TENSOR.match(name))}
    if layers != set(range(n_layers)):
        return f"llama.block_count is {n_layers:,} but the file holds {len(layers):,} layers of tensors"
    if "output.weight" in shapes:  # absent when tied to the embedding
        expected["output.weight"] = (n_embd, n_tokens)
    for name, shape in expected.items():
        if name not in shapes:
            return f"tensor {name} is missing"
        if shapes[name] != shape:
            return f"tensor {name} is {list(shapes[name])}, the header's sizes say {list(shape)}"
    return None


def check_hyperparameters(meta: dict, tensors: Sequence[TensorInfo], n_tokens: int) -> str | None:
    """What is wrong with a llama GGUF's hyper-parameters, in a few words, or None."""
    problem = _typed_value_problem(meta) or _shape_problem(meta, tensors, n_tokens)
    if problem:
        return problem
    for key in TOKEN_ID_KEYS:
        if key in meta and (type(meta[key]) is not int or not 0 <= meta[key] < n_tokens):
            return f"{key} is {meta[key]!r}, not one of the {n_tokens:,} tokens"
    return None
