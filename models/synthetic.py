"""Random XGen-shaped checkpoints, laid out exactly like the published ones.

Used by `xgen demo` (a tiny model built in seconds, no download), by the tests, and by
the benchmarks (real 7B tensor shapes, a few layers). Weights are scaled so that logits
have a spread of a few units: flat logits would hide conversion errors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from models.checkpoint import is_weight
from models.config import ModelArgs

MAX_SHARD_BYTES = 2 << 30

TOKENIZER_CONFIG = {
    "tokenizer_class": "XgenTokenizer",
    "auto_map": {"AutoTokenizer": ["tokenization_xgen.XgenTokenizer", None]},
    "add_eos_token": False,
    "add_special_tokens": True,
    "clean_up_tokenization_spaces": True,
    "eos_token": "<|endoftext|>",
    "pad_token": None,
    "model_max_length": 1000000000000000019884624838656,
}


def hf_tensors(args: ModelArgs, seed: int = 0) -> Iterator[tuple[str, torch.Tensor]]:
    """Random fp32 weights in HF naming, layer by layer, with the inv_freq buffers."""
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * std

    def norm_weight() -> torch.Tensor:
        return 1.0 + normal(args.dim, std=0.1)

    head_dim = args.head_dim
    kv_dim = args.n_kv_heads * head_dim
    inv_freq = 1.0 / (args.rope_theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    yield "model.embed_tokens.weight", normal(args.vocab_size, args.dim, std=1.0)
    for i in range(args.n_layers):
        p = f"model.layers.{i}."
        yield p + "self_attn.q_proj.weight", normal(args.dim, args.dim, std=args.dim ** -0.5)
        yield p + "self_attn.k_proj.weight", normal(kv_dim, args.dim, std=args.dim ** -0.5)
        yield p + "self_attn.v_proj.weight", normal(kv_dim, args.dim, std=args.dim ** -0.5)
        yield p + "self_attn.o_proj.weight", normal(args.dim, args.dim, std=0.5 * args.dim ** -0.5)
        yield p + "self_attn.rotary_emb.inv_freq", inv_freq.clone()
        yield p + "mlp.gate_proj.weight", normal(args.intermediate_size, args.dim, std=args.dim ** -0.5)
        yield p + "mlp.up_proj.weight", normal(args.intermediate_size, args.dim, std=args.dim ** -0.5)
        yield p + "mlp.down_proj.weight", normal(args.dim, args.intermediate_size,
                                                 std=0.5 * args.intermediate_size ** -0.5)
        yield p + "input_layernorm.weight", norm_weight()
        yield p + "post_attention_layernorm.weight", norm_weight()
    yield "model.norm.weight", norm_weight()
    if not args.tie_word_embeddings:
        yield "lm_head.weight", normal(args.vocab_size, args.dim, std=3.0 * args.dim ** -0.5)


def write_checkpoint(folder: str | Path, args: ModelArgs, *, n_shards: int = 2, seed: int = 0,
                     fmt: str = "pytorch", extra_config: dict | None = None) -> Path:
    """Write a checkpoint folder (config, tokenizer config, sharded weights, index)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = args.to_hf_config() | (extra_config or {})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))

    # Spread tensors over shards by layer, the way HF's save_pretrained splits them; a
    # shard is built in memory before it is saved, so big models get more of them.
    layer_bytes = 4 * (4 * args.dim * args.dim + 3 * args.dim * args.intermediate_size)
    n_shards = min(args.n_layers, max(n_shards, -(-args.n_layers * layer_bytes // MAX_SHARD_BYTES)))
    per_shard = max(1, -(-args.n_layers // n_shards))
    shard_of = lambda name: min(n_shards - 1, _layer_index(name, args.n_layers) // per_shard)  # noqa: E731
    suffix = "safetensors" if fmt == "safetensors" else "bin"
    stem = "model" if fmt == "safetensors" else "pytorch_model"
    names = [f"{stem}-{i + 1:05d}-of-{n_shards:05d}.{suffix}" for i in range(n_shards)]

    weight_map: dict[str, str] = {}
    current: dict[str, torch.Tensor] = {}
    current_shard = 0
    total_size = 0
    for name, tensor in hf_tensors(args, seed):
        if fmt == "safetensors" and not is_weight(name):
            continue  # HF's safetensors exports carry no rotary buffers
        shard = shard_of(name)
        if shard != current_shard:
            _save(current, folder / names[current_shard], fmt)
            current, current_shard = {}, shard
        current[name] = tensor
        weight_map[name] = names[shard]
        total_size += tensor.numel() * tensor.element_size()
    _save(current, folder / names[current_shard], fmt)

    index_name = f"{stem}.{suffix}.index.json" if fmt != "safetensors" else "model.safetensors.index.json"
    (folder / index_name).write_text(json.dumps(
        {"metadata": {"total_size": total_size}, "weight_map": weight_map}, indent=2))
    return folder


def _layer_index(name: str, n_layers: int) -> int:
    if name.startswith("model.layers."):
        return int(name.split(".")[2])
    return 0 if "embed_tokens" in name else n_layers - 1


def _save(tensors: dict[str, torch.Tensor], path: Path, fmt: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(tmp))
    else:
        torch.save(tensors, tmp)
    os.replace(tmp, path)
