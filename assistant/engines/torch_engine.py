"""The PyTorch engine: XGen from a Hugging Face checkpoint folder (bf16 on CUDA, fp32 on CPU).

One static KV cache of n_ctx positions (models/xgen.py). The engine remembers which ids
have their keys/values in it (`_cached`, position i holds _cached[i]); a new prompt only
recomputes the positions after its longest common prefix with them. Entries past the
current position may be stale: the causal mask never lets a token see them, and they
are overwritten before any later token could.

Host/device traffic per generated token. Everything up to the token id stays on the
device: the position counter, the history used by the repetition penalty, sampling.
The host needs the id only to test for end-of-text and to stream its text. The loop
therefore copies token t to pinned host memory with non_blocking=True, records an
event, *queues the forward pass for token t+1*, and only then waits for the event and
reads token t. On CUDA the wait ends as soon as token t is sampled, so detokenizing,
streaming and the stop/EOS checks for t run while the GPU computes t+1. On CPU every
op runs synchronously and the same code simply reads the value (one sync per token,
which is the cost of streaming). The forward pass queued for a token that turns out to
be the last one is wasted work but harmless: it only writes that token's K/V, and
`_cached` records it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from assistant.engines.base import Engine, SamplingSettings, TiktokenVocab, common_prefix_length
from assistant.engines.driver import Prefilled, Step
from assistant.engines.sampling import sample_next
from models.checkpoint import CheckpointReader, find_checkpoint
from models.checkpoint import folder_fingerprint
from models.config import ModelArgs
from models.errors import XGenError
from models.tokenizer import XGenTokenizer
from models.hf_weights import load_hf_weights
from models.inference import decode_one_token, pick_device_dtype, prefill
from models.xgen import build_model

PREFILL_CHUNK = 256


class TorchEngine(TiktokenVocab, Engine):
    name = "torch"

    def __init__(self, folder: str | Path, *, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, n_ctx: int | None = None, compile: bool = False):
        folder = Path(folder)
        args = ModelArgs.from_folder(folder)
        checkpoint = find_checkpoint(folder)
        self.device, self.dtype = pick_device_dtype(device, dtype)
        n_ctx = args.max_seq_len if n_ctx is None else int(n_ctx)
        if not 1 < n_ctx <= args.max_seq_len:
            raise XGenError(f"n_ctx {n_ctx} is out of range: this model's context is 2..{args.max_seq_len} tokens")
        self.args = args
        self.model_name = folder.resolve().name
        self._fingerprint = folder_fingerprint(folder)
        self._tokenizer = XGenTokenizer(allow_download=False)
        self.model = build_model(args, self.device, self.dtype)
        load_hf_weights(self.model, CheckpointReader(checkpoint))  # one tensor at a time
        self.model.setup_caches(1, n_ctx)
        self._n_ctx = n_ctx
        self._cached: list[int] = []  # ids whose K/V sit at cache positions 0..len-1
        self._decode = decode_one_token
        if compile:
            # Static shapes and no host reads in a decode step: fit for CUDA graphs.
            self._decode = torch.compile(decode_one_token, mode="reduce-overhead", fullgraph=True)
        self._pinned = self.device.type == "cuda"
        self.prefill_chunk = PREFILL_CHUNK  # prompt tokens per forward pass; `stop` is checked between

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def identity(self) -> str:
        return f"torch:{self._fingerprint}:{self.dtype}"

    def close(self) -> None:
        if getattr(self, "model", None) is not None:
            self.model.clear_caches()
            self.model = None
            self._cached = []
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # -- internals -----------------------------------------------------------------

    def _prefill_chunk(self, ids: list[int], start: int) -> torch.Tensor:
        """Run ids at positions start.. through the model; fp32 logits of the last [1, V]."""
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)  # [1, T]
        input_pos = torch.arange(start, start + len(ids), device=self.device)  # [T]
        return prefill(self.model, idx, input_pos)

    # -- generation ----------------------------------------------------------------

    def stream(self, prompt_ids: list[int], settings: SamplingSettings, budget: int,
               stop: threading.Event | None) -> Iterator[Step]:
        if self.model is None:
            raise XGenError("this engine has been closed")
        return self._steps(prompt_ids, settings, budget)

    @torch.no_grad()
    def _steps(self, prompt_ids: list[int], settings: SamplingSettings, budget: int) -> Iterator[Step]:
        n_prompt = len(prompt_ids)

        # Prompt: keep the common prefix (at least one token is evaluated, for its logits).
        pos = min(common_prefix_length(self._cached, prompt_ids), n_prompt - 1)
        self._cached = self._cached[:pos]
        logits = None
        while pos < n_prompt:
            chunk = prompt_ids[pos:pos + self.prefill_chunk]
            logits = self._prefill_chunk(chunk, pos)
            pos += len(chunk)
            self._cached = list(prompt_ids[:pos])  # only fully evaluated chunks count
            yield Prefilled(len(chunk), pos)
        assert logits is not None

        # Reply. history[i] = id at position i (prompt then reply), for the penalty. The
        # driver asks for at most `budget` tokens (it fits the context).
        history = torch.empty(n_prompt + budget, dtype=torch.long, device=self.device)
        history[:n_prompt] = torch.tensor(prompt_ids, dtype=torch.long)
        input_pos = torch.tensor([n_prompt - 1], dtype=torch.long, device=self.device)  # [1]
        generator = None
        if settings.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(settings.seed)
        host = torch.empty(2, dtype=torch.long, pin_memory=self._pinned)  # double buffer
        n_recent = settings.repeat_last_n if settings.repeat_last_n >= 0 else self._n_ctx  # -1: everything
        for n in range(budget):
            at = n_prompt + n  # position of the token about to be sampled
            recent = history[max(0, at - n_recent):at]
            token = sample_next(logits[0], settings, recent, generator)  # 0-d, on device
            history[at] = token
            slot = host[n % 2]
            slot.copy_(token, non_blocking=self._pinned)
            ready = None
            if self._pinned:
                ready = torch.cuda.Event()
                ready.record()
            # Queue token t+1's forward pass before reading token t (see the module doc),
            # unless t is the last the driver may ask for.
            computed = n + 1 < budget
            if computed:
                input_pos += 1
                logits = self._decode(self.model, token.view(1, 1), input_pos)
            if ready is not None:
                ready.synchronize()
            value = int(slot)
            if computed:
                self._cached.append(value)
            yield value
