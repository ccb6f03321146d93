"""Running the PyTorch XGen model (models/xgen.py): device and dtype, prefill, one decode
step, and greedy generation for tests and benchmarks.

`decode_one_token` keeps static shapes and never reads back to the host, so it can be
wrapped in `torch.compile` / CUDA graphs; `greedy_generate` reads back only to look for
the end of text, in batches.

Shape letters: B batch, T tokens in this call, V vocab.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.errors import XGenError
from models.xgen import Transformer

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
