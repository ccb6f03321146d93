"""Hugging Face weights into the PyTorch XGen model (models/xgen.py): the name mapping
between HF's `LlamaForCausalLM` tensors and this model's parameters, and a loader that
copies a (streamed) checkpoint in, tensor by tensor, with one-line errors."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import Tensor

from models.errors import XGenError
from models.xgen import Transformer


# HF name -> this model's name; "{i}" is the layer index.
HF_TO_XGEN: dict[str, str] = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{i}.self_attn.q_proj.weight": "layers.{i}.attention.wq.weight",
    "model.layers.{i}.self_attn.k_proj.weight": "layers.{i}.attention.wk.weight",
    "model.layers.{i}.self_attn.v_proj.weight": "layers.{i}.attention.wv.weight",
    "model.layers.{i}.self_attn.o_proj.weight": "layers.{i}.attention.wo.weight",
    "model.layers.{i}.mlp.gate_proj.weight": "layers.{i}.feed_forward.w1.weight",
    "model.layers.{i}.mlp.up_proj.weight": "layers.{i}.feed_forward.w3.weight",
    "model.layers.{i}.mlp.down_proj.weight": "layers.{i}.feed_forward.w2.weight",
    "model.layers.{i}.input_layernorm.weight": "layers.{i}.attention_norm.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "layers.{i}.ffn_norm.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}
XGEN_TO_HF: dict[str, str] = {ours: hf for hf, ours in HF_TO_XGEN.items()}

_LAYER = re.compile(r"\.(\d+)\.")


def _split_layer(name: str) -> tuple[str, str | None]:
    """'model.layers.3.mlp.up_proj.weight' -> ('model.layers.{i}.mlp.up_proj.weight', '3')."""
    match = _LAYER.search(name)
    if match is None:
        return name, None
    return name[:match.start()] + ".{i}." + name[match.end():], match.group(1)


def hf_to_xgen_name(hf_name: str) -> str | None:
    """This model's parameter name for an HF tensor name, or None if there is none."""
    template, layer = _split_layer(hf_name)
    ours = HF_TO_XGEN.get(template)
    if ours is None:
        return None
    return ours if layer is None else ours.replace("{i}", layer)


def xgen_to_hf_name(name: str) -> str:
    template, layer = _split_layer(name)
    hf = XGEN_TO_HF.get(template, name)
    return hf if layer is None else hf.replace("{i}", layer)


def load_hf_weights(model: Transformer, tensors: Iterable[tuple[str, Tensor]]) -> None:
    """Copy HF-named tensors into `model`, one at a time (fine for a streamed checkpoint).

    Each tensor is cast to the parameter's dtype and device on copy. `rotary_emb.inv_freq`
    buffers are skipped (RoPE is recomputed). With tied embeddings `lm_head.weight`, if
    present, is ignored: the output uses the embedding, as in HF. Raises XGenError naming
    the tensor for an unknown name, a shape mismatch, a tensor given twice, and for any
    model weight that was never loaded.
    """
    params = dict(model.named_parameters())  # tied output.weight is not listed separately
    loaded: set[str] = set()
    with torch.no_grad():
        for hf_name, tensor in tensors:
            if hf_name.endswith("rotary_emb.inv_freq"):
                continue
            if hf_name == "lm_head.weight" and model.args.tie_word_embeddings:
                continue
            name = hf_to_xgen_name(hf_name)
            if name is None or name not in params:
                raise XGenError(f"unknown tensor {hf_name!r}: not part of an XGen/Llama "
                                f"model with {model.args.n_layers} layers")
            param = params[name]
            if tuple(tensor.shape) != tuple(param.shape):
                raise XGenError(f"tensor {hf_name!r} has shape {tuple(tensor.shape)}, "
                                f"expected {tuple(param.shape)}")
            if name in loaded:
                raise XGenError(f"tensor {hf_name!r} appears twice")
            param.copy_(tensor)  # casts dtype, moves device
            loaded.add(name)
    missing = [xgen_to_hf_name(name) for name in params if name not in loaded]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise XGenError(f"checkpoint is missing tensor {missing[0]!r}{more}")
