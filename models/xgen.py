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

Sampling lives elsewhere; this module only provides `prefill`, `decode_one_token`
and, for tests, `greedy_generate`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

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
# Inference steps
# --------------------------------------------------------------------------------------


@torch.no_grad()
def prefill(model: Transformer, idx: Tensor, input_pos: Tensor) -> Tensor:
    """Run the prompt idx [B, T] at positions input_pos [T]; fp32 logits of the last one [B, V]."""
    return model(idx, input_pos)[:, -1]


@torch.no_grad()
def decode_one_token(model: Transformer, token: Tensor, input_pos: Tensor) -> Tensor:
    """One decode step: token [B, 1] at position input_pos [1] -> fp32 logits [B, V].

    Static shapes and no host reads, so it can be compiled / captured in a CUDA graph.
    """
    return model(token, input_pos)[:, -1]


@torch.no_grad()
def greedy_generate(model: Transformer, prompt_ids: list[int], max_new_tokens: int,
                    eos_id: int | None = None, eos_check_every: int = 16) -> list[int]:
    """Greedy decoding of one prompt; returns the new tokens only (not the prompt).

    Stops after `eos_id` (which is included in the result, like HF `generate`) or after
    `max_new_tokens` tokens.

    Host syncs: the running position and the generated tokens stay on the device, so a
    decode step never waits for the host. The EOS test needs a host read, so it is done
    in batches: every `eos_check_every` tokens (0 = only once, at the end). Up to
    `eos_check_every - 1` tokens may be computed past the EOS; they are cut off, so the
    result is the same as checking after every token.
    """
    if not prompt_ids:
        raise XGenError("greedy_generate needs a non-empty prompt")
    if max_new_tokens <= 0:
        return []
    total = len(prompt_ids) + max_new_tokens
    if model.max_batch_size < 1 or model.max_seq_length < total:
        model.setup_caches(max(1, model.max_batch_size), total)
    device = model.device

    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # [1, T]
    input_pos = torch.arange(len(prompt_ids), device=device)              # [T]
    out = torch.empty(max_new_tokens, dtype=torch.long, device=device)    # generated ids

    token = prefill(model, prompt, input_pos).argmax(dim=-1, keepdim=True)  # [1, 1]
    out[0] = token[0, 0]
    input_pos = input_pos[-1:].clone()  # [1], the position of the last prompt token
    checked = 0  # out[:checked] is known to hold no EOS
    for i in range(1, max_new_tokens + 1):
        if eos_id is not None and eos_check_every > 0 and i % eos_check_every == 0:
            stop = _first_eos(out[checked:i], eos_id)
            if stop is not None:
                return out[:checked + stop + 1].tolist()
            checked = i
        if i == max_new_tokens:
            break
        input_pos += 1
        token = decode_one_token(model, token, input_pos).argmax(dim=-1, keepdim=True)
        out[i] = token[0, 0]

    result = out.tolist()
    if eos_id is not None and eos_id in result:
        result = result[:result.index(eos_id) + 1]
    return result


def _first_eos(tokens: Tensor, eos_id: int) -> int | None:
    """Index of the first eos_id in tokens [N] (one host sync), or None."""
    hits = (tokens == eos_id).nonzero()
    return int(hits[0, 0]) if hits.numel() else None


# --------------------------------------------------------------------------------------
# Hugging Face weights
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------

_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
}


def pick_device_dtype(device: str | torch.device | None = None,
                      dtype: str | torch.dtype | None = None) -> tuple[torch.device, torch.dtype]:
    """Device and compute dtype: CUDA -> bf16, CPU -> fp32, unless `dtype` says otherwise.

    device None picks CUDA when available. dtype may be a torch dtype or one of
    fp32/float32, bf16/bfloat16, fp16/float16.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise XGenError("device 'cuda' requested but no CUDA device is available")
    if dtype is None:
        return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise XGenError(f"unsupported dtype {dtype}; use fp32, bf16 or fp16")
        return dev, dtype
    try:
        return dev, _DTYPES[dtype.lower()]
    except KeyError:
        raise XGenError(f"unknown dtype {dtype!r}; use fp32, bf16 or fp16") from None


def build_model(args: ModelArgs, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, *, init: bool = False,
                seed: int = 0) -> Transformer:
    """A Transformer for `args` on `device` in `dtype`, each weight allocated once.

    The module tree is built on the meta device (no memory), cast, then materialised
    with `to_empty`. Weights are left UNINITIALISED unless init=True (a seeded normal
    init, for demos and benchmarks): normally `load_hf_weights` fills them next, and it
    refuses to finish if any weight was not loaded.
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
