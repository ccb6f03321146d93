"""Reference logits of the fp32 model, one decoder layer at a time, never the whole model.

`verify` compares llama.cpp's logits with the original checkpoint's. Building the
whole fp32 model for that costs 28 GB at XGen-7B's size; here the hidden states of
every prompt (a few KB) are what stays in memory, and the weights are read layer by
layer from the memory-mapped checkpoint (models/checkpoint.py):

    embeddings (only the rows of the prompt's tokens)
    for each layer: that layer's 9 tensors -> every prompt through the layer -> drop them
    final norm, then the output matrix in blocks of vocabulary rows.

The layer is the model's own `TransformerBlock` (built on the meta device, so it owns
no memory) run with `torch.func.functional_call` on the checkpoint's tensors, so the
math is exactly the whole model's. fp32 shards are used in place: their pages are
file-backed and reclaimable, so anonymous memory holds only activations. Other dtypes
are cast one tensor (the output matrix: one block of rows) at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from models.checkpoint import CheckpointReader, find_checkpoint
from models.config import ModelArgs
from models.errors import XGenError
from models.hf_weights import xgen_to_hf_name
from models.xgen import RMSNorm, Transformer, TransformerBlock, precompute_rope

# Rows of the output matrix cast and multiplied at once: 8192 x 4096 fp32 is 128 MiB.
VOCAB_BLOCK = 8192


def reference_logits(folder: str | Path, sequences: Sequence[Sequence[int]], *,
                     vocab_block: int = VOCAB_BLOCK) -> list[Tensor]:
    """fp32 logits [len(ids), vocab] of the checkpoint in `folder` for each token sequence."""
    args = ModelArgs.from_folder(folder)
    reader = CheckpointReader(find_checkpoint(folder))
    return streamed_logits(reader, args, sequences, vocab_block=vocab_block)


def check_reader(reader: CheckpointReader, args: ModelArgs) -> None:
    """Every tensor the model needs is there with its shape, and nothing else (header only)."""
    with torch.device("meta"):
        model = Transformer(args)
    expected = {xgen_to_hf_name(name): tuple(p.shape) for name, p in model.named_parameters()}
    present = set(reader.names())
    for hf_name, shape in expected.items():
        if hf_name not in present:
            raise XGenError(f"checkpoint is missing tensor {hf_name!r}")
        if reader.shape(hf_name) != shape:
            raise XGenError(f"tensor {hf_name!r} has shape {reader.shape(hf_name)}, expected {shape}")
    extra = sorted(present - set(expected) - ({"lm_head.weight"} if args.tie_word_embeddings else set()))
    if extra:
        raise XGenError(f"unknown tensor {extra[0]!r}: not part of an XGen/Llama model with "
                        f"{args.n_layers} layers")


def streamed_logits(reader: CheckpointReader, args: ModelArgs, sequences: Sequence[Sequence[int]], *,
                    vocab_block: int = VOCAB_BLOCK) -> list[Tensor]:
    """Like `Transformer(args)(ids)` with the reader's weights, for each sequence; layer by layer."""
    if not sequences or any(len(ids) == 0 for ids in sequences):
        raise XGenError("reference logits need at least one non-empty token sequence")
    longest = max(len(ids) for ids in sequences)
    if longest > args.max_seq_len:
        raise XGenError(f"a sequence of {longest} tokens exceeds the model's context of {args.max_seq_len}")
    for ids in sequences:
        bad = [t for t in ids if not 0 <= t < args.vocab_size]
        if bad:
            raise XGenError(f"token id {bad[0]} is outside the vocabulary of {args.vocab_size}")
    check_reader(reader, args)

    def weight(hf_name: str) -> Tensor:
        return reader.get(hf_name)  # memory-mapped; cast by the caller where needed

    with torch.inference_mode():
        embed = weight("model.embed_tokens.weight")
        # Indexing copies only the prompt's rows out of the mapped matrix.
        hidden = [embed[torch.tensor(list(ids), dtype=torch.long)].float()[None] for ids in sequences]  # [1, T, D]
        del embed
        cos, sin = precompute_rope(args.head_dim, longest, args.rope_theta)  # [T, Hd] fp32
        with torch.device("meta"):
            block = TransformerBlock(args)
            final_norm = RMSNorm(args.dim, args.norm_eps)
        names = [name for name, _ in block.named_parameters()]
        for i in range(args.n_layers):
            params = {name: weight(xgen_to_hf_name(f"layers.{i}.{name}")).float() for name in names}
            hidden = [functional_call(block, params, (x, cos[:x.shape[1]], sin[:x.shape[1]], None, None))
                      for x in hidden]
            del params
        norm = {"weight": weight("model.norm.weight").float()}
        hidden = [functional_call(final_norm, norm, (x,))[0] for x in hidden]  # [T, D]
        head = weight("model.embed_tokens.weight" if args.tie_word_embeddings else "lm_head.weight")
        return [_linear_in_blocks(x, head, vocab_block) for x in hidden]


def _linear_in_blocks(x: Tensor, w: Tensor, rows: int) -> Tensor:
    """x [T, D] @ w[V, D].T -> [T, V] fp32, casting at most `rows` rows of w at a time."""
    out = torch.empty(x.shape[0], w.shape[0], dtype=torch.float32)
    for first in range(0, w.shape[0], rows):
        out[:, first:first + rows] = F.linear(x, w[first:first + rows].float())
    return out
