"""XGen-7B in plain PyTorch: a small, readable Llama (gpt-fast / nanoGPT style).

Two jobs:

* the optional bf16 CUDA inference path (static KV cache, no host syncs in a decode
  step, so `decode_one_token` can be wrapped in `torch.compile` / CUDA graphs);
* the fp32 numerical reference the GGUF converter is tested against.

XGen-7B is architecturally a `LlamaForCausalLM` (see ../shared/XGEN.md): RMSNorm,
rotary embeddings in Hugging Face's *rotate-half* layout, multi-head attention with
no biases, a SwiGLU feed-forward and an untied output projection. Because we keep
the rotate-half layout, Hugging Face `q_proj` / `k_proj` weights load unchanged
(the GGUF converter, not this file, permutes them for llama.cpp).

Shape letters used in comments:
    B batch, T tokens in this call, S cache length (max_seq_length),
    D model dim, H query heads, K key/value heads, Hd head dim, F ffn dim, V vocab.

The model only: the inference steps (`prefill`, `decode_one_token`, `greedy_generate`)
are in models/inference.py, the Hugging Face names and weight loading in
models/hf_weights.py. Sampling lives in the engines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.config import ModelArgs
from models.errors import XGenError

# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32 and cast back (as Hugging Face does)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:  # [..., D] -> [..., D]
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def precompute_rope(head_dim: int, max_seq_len: int, theta: float,
                    device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """cos and sin tables, fp32, each [max_seq_len, Hd], in the rotate-half layout.

    Row p holds the angles p * inv_freq repeated twice: [f0 .. f_{Hd/2-1}, f0 .. f_{Hd/2-1}],
    which pairs dimension j with dimension j + Hd/2 (HF's `rotate_half`).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32)
                                / head_dim))                                 # [Hd/2]
    positions = torch.arange(max_seq_len, device=device, dtype=torch.float32)  # [S]
    angles = torch.outer(positions, inv_freq)                                # [S, Hd/2]
    angles = torch.cat([angles, angles], dim=-1)                             # [S, Hd]
    return angles.cos(), angles.sin()


def rotate_half(x: Tensor) -> Tensor:  # [..., Hd] -> [..., Hd]
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x [B, heads, T, Hd] by cos/sin [T, Hd]; math in fp32, result in x.dtype."""
    x32 = x.float()
    return (x32 * cos + rotate_half(x32) * sin).type_as(x)


class KVCache(nn.Module):
    """Static key/value cache, preallocated [B, K, S, Hd] in the model dtype and device.

    `update` writes the new keys/values at `input_pos` with `index_copy_` (positions are
    a device tensor, nothing is read back on the host) and returns the whole cache.
    """

    def __init__(self, max_batch_size: int, n_kv_heads: int, max_seq_length: int,
                 head_dim: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        shape = (max_batch_size, n_kv_heads, max_seq_length, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device),
                             persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device),
                             persistent=False)

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        # input_pos [T]; k, v [B, K, T, Hd] -> full caches [B, K, S, Hd]
        batch = k.shape[0]
        k_out = self.k_cache[:batch]  # a view: writes land in the buffer
        v_out = self.v_cache[:batch]
        k_out.index_copy_(2, input_pos, k.to(k_out.dtype))
        v_out.index_copy_(2, input_pos, v.to(v_out.dtype))
        return k_out, v_out


class Attention(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.n_heads = args.n_heads
        self.n_kv_heads = args.n_kv_heads
        self.head_dim = args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor,
                mask: Tensor | None, input_pos: Tensor | None) -> Tensor:
        # x [B, T, D]; cos, sin [T, Hd]; mask [1, 1, T, S] bool or None (plain causal)
        bsz, seqlen, _ = x.shape
        q = self.wq(x).view(bsz, seqlen, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim).transpose(1, 2)
        # q [B, H, T, Hd]; k, v [B, K, T, Hd]
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)

        if mask is not None:
            assert self.kv_cache is not None and input_pos is not None
            k, v = self.kv_cache.update(input_pos, k, v)  # [B, K, S, Hd]

        n_rep = self.n_heads // self.n_kv_heads
        if n_rep > 1:  # grouped-query attention: share each K/V head among n_rep query heads
            k = k.repeat_interleave(n_rep, dim=1)  # [B, H, S or T, Hd]
            v = v.repeat_interleave(n_rep, dim=1)

        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        # y [B, H, T, Hd]
        y = y.transpose(1, 2).contiguous().view(bsz, seqlen, self.n_heads * self.head_dim)
        return self.wo(y)  # [B, T, D]


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x); HF names: w1 gate_proj, w3 up_proj, w2 down_proj."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.w1 = nn.Linear(args.dim, args.intermediate_size, bias=False)
        self.w3 = nn.Linear(args.dim, args.intermediate_size, bias=False)
        self.w2 = nn.Linear(args.intermediate_size, args.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # [B, T, D] -> [B, T, D]
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # hidden [B, T, F]


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor,
                mask: Tensor | None, input_pos: Tensor | None) -> Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, mask, input_pos)
        return h + self.feed_forward(self.ffn_norm(h))  # [B, T, D]


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        self._tie_weights()
        self._set_rope()
        self.max_batch_size = 0
        self.max_seq_length = 0
        self.register_buffer("causal_mask", None, persistent=False)  # [S, S] bool, by setup_caches

    # -- housekeeping ------------------------------------------------------------------

    def _tie_weights(self) -> None:
        if self.args.tie_word_embeddings:
            self.output.weight = self.tok_embeddings.weight

    def _set_rope(self) -> None:
        """(Re)compute the fp32 cos/sin tables on the weights' device."""
        cos, sin = precompute_rope(self.args.head_dim, self.args.max_seq_len,
                                   self.args.rope_theta, self.tok_embeddings.weight.device)
        self.register_buffer("rope_cos", cos, persistent=False)  # [max_seq_len, Hd] fp32
        self.register_buffer("rope_sin", sin, persistent=False)

    def _apply(self, fn, *args, **kwargs):
        # `.to(dtype)`, `.to_empty(device)`, `.cuda()` ... all come through here. Keep the
        # RoPE tables in fp32 (a dtype cast would otherwise round them to bf16), refill them
        # after `to_empty` (which leaves buffers uninitialised), and re-tie the output
        # projection (moving off the meta device creates fresh parameters).
        super()._apply(fn, *args, **kwargs)
        self._tie_weights()
        self._set_rope()
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.output.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.output.weight.device

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        """Allocate a KV cache per layer and the [S, S] causal mask, in model dtype/device."""
        if max_seq_length > self.args.max_seq_len:
            raise XGenError(f"max_seq_length {max_seq_length} exceeds the model's context "
                            f"of {self.args.max_seq_len} tokens")
        if max_batch_size == self.max_batch_size and max_seq_length == self.max_seq_length:
            return
        self.max_batch_size = max_batch_size
        self.max_seq_length = max_seq_length
        for layer in self.layers:
            layer.attention.kv_cache = KVCache(max_batch_size, self.args.n_kv_heads,
                                               max_seq_length, self.args.head_dim,
                                               self.dtype, self.device)
        mask = torch.ones(max_seq_length, max_seq_length, dtype=torch.bool, device=self.device)
        self.register_buffer("causal_mask", torch.tril(mask), persistent=False)  # [S, S]

    def clear_caches(self) -> None:
        for layer in self.layers:
            layer.attention.kv_cache = None
        self.causal_mask = None
        self.max_batch_size = self.max_seq_length = 0

    # -- forward -----------------------------------------------------------------------

    def forward(self, idx: Tensor, input_pos: Tensor | None = None) -> Tensor:
        """idx [B, T] token ids -> fp32 logits [B, T, V].

        input_pos None: a plain causal forward over positions 0..T-1 (caches untouched).
        input_pos [T] (LongTensor on the model device): positions of these tokens; their
        keys/values go into the caches set up by `setup_caches`, and each token attends
        to every cached position <= its own.
        """
        if input_pos is None:
            seqlen = idx.shape[1]
            cos, sin = self.rope_cos[:seqlen], self.rope_sin[:seqlen]  # [T, Hd]
            mask = None
        else:
            if self.causal_mask is None:
                raise XGenError("forward with input_pos needs caches: call setup_caches first")
            cos, sin = self.rope_cos[input_pos], self.rope_sin[input_pos]  # [T, Hd]
            mask = self.causal_mask[None, None, input_pos]  # [1, 1, T, S]

        x = self.tok_embeddings(idx)  # [B, T, D]
        for layer in self.layers:
            x = layer(x, cos, sin, mask, input_pos)
        x = self.norm(x)
        return self.output(x).float()  # [B, T, V]


# --------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------


def build_model(args: ModelArgs, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, *, init: bool = False,
                seed: int = 0) -> Transformer:
    """A Transformer for `args` on `device` in `dtype`, each weight allocated once.

    The module tree is built on the meta device (no memory), cast, then materialised
    with `to_empty`. Weights are left UNINITIALISED unless init=True (a seeded normal
    init, for demos and benchmarks): normally `models.hf_weights.load_hf_weights` fills
    them next, and it refuses to finish if any weight was not loaded.
    """
    with torch.device("meta"):
        model = Transformer(args)
    model = model.to(dtype=dtype)          # free on meta
    model = model.to_empty(device=device)  # one allocation; RoPE refilled by _apply
    if init:
        init_weights(model, seed)
    return model.eval()


@torch.no_grad()
def init_weights(model: Transformer, seed: int = 0, std: float = 0.02) -> None:
    """Random weights: normal(0, std) for matrices, ones for the norms."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            param.fill_(1.0)
        else:
            param.copy_(torch.randn(param.shape, generator=gen) * std)
