"""Helpers for engine tests: greedy decoding by full causal forwards (the reference), and
a stop request set from the stream."""

from __future__ import annotations

import threading

import torch

from models.tokenizer import N_VOCAB

EOS = 50256


@torch.no_grad()
def masked_greedy(model, prompt: list[int], n: int) -> list[int]:
    """Greedy ids by full causal forwards (no KV cache), never picking a padding id; stops
    before end-of-text."""
    ids = list(prompt)
    for _ in range(n):
        x = model.tok_embeddings(torch.tensor([ids]))
        cos, sin = model.rope_cos[:len(ids)], model.rope_sin[:len(ids)]
        for layer in model.layers:
            x = layer(x, cos, sin, None, None)
        logits = model.output(model.norm(x[:, -1]))[0, :N_VOCAB]  # only the last position
        token = int(logits.argmax())
        if token == EOS:
            break
        ids.append(token)
    return ids[len(prompt):]


def stop_after_pieces(n: int):
    """A stop event set by on_text once n pieces of text have streamed: (stop, pieces, on_text)."""
    stop = threading.Event()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == n:
            stop.set()

    return stop, pieces, on_text
