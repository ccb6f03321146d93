"""Next-token sampling for the PyTorch engine, on the device, with no host syncs.

The steps and their order are the ones the llama.cpp engine builds from llama.cpp's own
samplers (see assistant/engines/llama.py), so the engines mean the same by the same knobs:

1. padding ids (>= N_VOCAB = 50313) are masked: the XGen embedding has 51200 rows, the
   last 887 have no text and must never be sampled;
2. repetition penalty, llama.cpp semantics: for each distinct token among the last
   `repeat_last_n` ids, a positive logit is divided by the penalty, a negative one
   multiplied by it;
3. temperature <= 0: greedy (argmax) and stop here;
4. logits / temperature, then top-k, then top-p (nucleus) on the tempered distribution;
5. a draw from what is left.

Every step is a tensor op with shapes known on the host, so a decode step can stay on
the GPU queue (and inside a CUDA graph) until the caller reads the token.
"""

from __future__ import annotations

import torch

from assistant.engines.base import SamplingSettings
from models.tokenizer import N_VOCAB


def sample_next(logits: torch.Tensor, settings: SamplingSettings, recent: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id (0-d long tensor on logits' device) from fp32 logits [V].

    recent: the last `settings.repeat_last_n` token ids (prompt and reply), long, on the
    same device; may be empty. generator: a torch.Generator on that device for
    reproducible draws, or None for torch's global generator.
    """
    logits = logits.float().clone()  # [V]; never modify the caller's tensor
    if logits.shape[-1] > N_VOCAB:
        logits[N_VOCAB:] = float("-inf")  # padding rows

    penalty = settings.repeat_penalty
    if penalty != 1.0 and settings.repeat_last_n != 0 and recent.numel() > 0:
        # Duplicates in `recent` gather the same original value and write the same result.
        picked = logits.gather(0, recent)
        picked = torch.where(picked > 0, picked / penalty, picked * penalty)
        logits.scatter_(0, recent, picked)

    if settings.temperature <= 0:
        return logits.argmax()

    logits = logits / settings.temperature
    vocab = logits.shape[-1]
    top_k = settings.top_k
    if 0 < top_k < vocab:
        values, ids = torch.topk(logits, top_k)  # [k] sorted, largest first
    elif settings.top_p < 1.0:
        values, ids = torch.sort(logits, descending=True)  # [V]; slow on CPU (~25 ms), rarely needed
    else:
        values, ids = logits, None  # the whole vocabulary, no order needed
    if settings.top_p < 1.0:
        probs = torch.softmax(values, dim=-1)
        # Drop a token when the tokens before it already cover top_p (the first always stays).
        drop = (torch.cumsum(probs, dim=-1) - probs) > settings.top_p
        values = values.masked_fill(drop, float("-inf"))
    probs = torch.softmax(values, dim=-1)
    # Gumbel-style draw: argmax(p / Exp(1)) is a sample from p, with no host sync
    # (torch.multinomial may synchronise on CUDA).
    noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    choice = torch.argmax(probs / noise)
    return choice if ids is None else ids[choice]
