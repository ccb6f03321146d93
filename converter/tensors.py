"""HF XGen tensors -> GGUF tensors: names, expected shapes and the Q/K permutation.

Like llama.cpp's `convert_hf_to_gguf`, the mapping is a generator over source tensors;
unlike it, nothing is held beyond the tensor being converted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from models.config import ModelArgs
from models.errors import XGenError

_LAYER_NAMES = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_HF_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def gguf_name(hf_name: str) -> str | None:
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    match = _HF_LAYER.match(hf_name)
    if match and match.group(2) in _LAYER_NAMES:
        return f"blk.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    return None


def expected_shapes(args: ModelArgs) -> dict[str, tuple[int, ...]]:
    """Every GGUF tensor an XGen model needs, with its numpy-order shape."""
    kv = args.n_kv_heads * args.head_dim
    shapes = {
        "token_embd.weight": (args.vocab_size, args.dim),
        "output_norm.weight": (args.dim,),
    }
    if not args.tie_word_embeddings:
        shapes["output.weight"] = (args.vocab_size, args.dim)
    for i in range(args.n_layers):
        p = f"blk.{i}."
        shapes |= {
            p + "attn_q.weight": (args.dim, args.dim),
            p + "attn_k.weight": (kv, args.dim),
            p + "attn_v.weight": (kv, args.dim),
            p + "attn_output.weight": (args.dim, args.dim),
            p + "ffn_gate.weight": (args.intermediate_size, args.dim),
            p + "ffn_up.weight": (args.intermediate_size, args.dim),
            p + "ffn_down.weight": (args.dim, args.intermediate_size),
            p + "attn_norm.weight": (args.dim,),
            p + "ffn_norm.weight": (args.dim,),
        }
    return shapes


def llama_cpp_order(name: str) -> tuple[int, str]:
    """llama.cpp's own tensor order (layer, then name); its quantizer counts layers in it."""
    match = re.match(r"^blk\.(\d+)\.", name)
    return (int(match.group(1)) if match else -1, name)


@dataclass(frozen=True)
class TensorSource:
    gguf_name: str
    hf_name: str
    shape: tuple[int, ...]


def match_tensors(hf_shapes: dict[str, tuple[int, ...]], args: ModelArgs) -> list[TensorSource]:
    """Pair every needed GGUF tensor with its HF source, checking names and shapes."""
    found: dict[str, TensorSource] = {}
    for hf_name, shape in hf_shapes.items():
        name = gguf_name(hf_name)
        if name is None:
            raise XGenError(f"unexpected tensor {hf_name} in the checkpoint; is this an XGen/Llama model?")
        found[name] = TensorSource(name, hf_name, tuple(shape))
    expected = expected_shapes(args)
    for name, shape in expected.items():
        if name not in found:
            raise XGenError(f"the checkpoint has no tensor {hf_name(name)}: it is incomplete or not XGen")
        if found[name].shape != shape:
            raise XGenError(f"tensor {found[name].hf_name} has shape {list(found[name].shape)}, "
                            f"config.json implies {list(shape)}")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise XGenError(f"tensor {found[extra[0]].hf_name} does not fit config.json "
                        f"(num_hidden_layers={args.n_layers})")
    return sorted(found.values(), key=lambda t: llama_cpp_order(t.gguf_name))


def hf_name(gguf: str) -> str:
    """The HF name a GGUF tensor comes from (inverse of `gguf_name`)."""
    for hf, name in _GLOBAL_NAMES.items():
        if name == gguf:
            return hf
    layer, rest = llama_cpp_order(gguf)[0], gguf.split(".", 2)[2]
    hf = next(k for k, v in _LAYER_NAMES.items() if v == rest)
    return f"model.layers.{layer}.{hf}"


def permute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF rotate-half row order -> the interleaved pairs llama.cpp's RoPE expects."""
    rows = w.shape[0]
    # [rows, cols] -> [heads, 2, head_dim/2, cols] -> swap the halves' axis -> [rows, cols]
    return (w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def to_gguf_array(source: TensorSource, tensor: torch.Tensor | np.ndarray, args: ModelArgs) -> np.ndarray:
    """The f32 numpy array llama.cpp expects for one tensor (no copy when none is needed)."""
    if isinstance(tensor, np.ndarray):
        data = tensor if tensor.dtype == np.float32 else tensor.astype(np.float32)
    else:
        data = (tensor if tensor.dtype == torch.float32 else tensor.float()).numpy()
    if source.gguf_name.endswith("attn_q.weight"):
        data = permute_rotary(data, args.n_heads)
    elif source.gguf_name.endswith("attn_k.weight"):
        data = permute_rotary(data, args.n_kv_heads)
    return data


def iter_gguf_arrays(sources: list[TensorSource], get, args: ModelArgs) -> Iterator[tuple[TensorSource, np.ndarray]]:
    """Yield each GGUF tensor's f32 data in `sources` order; `get(hf_name)` reads one."""
    for source in sources:
        yield source, to_gguf_array(source, get(source.hf_name), args)
