"""Check a converted GGUF: does llama.cpp tokenize and compute like the original model?

Tokenizer: llama.cpp's tokens against the tiktoken XGen tokenizer, and detokenizing
back to the same text. Logits (given the HF source): llama.cpp against the pure-PyTorch
model on the same token ids, as NMSE and top-1 agreement per prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.errors import XGenError
from models.llama_cpp_utils import detokenize, llama_logits, load_llama

SAMPLE_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def main():\n\tif x:\n\t\treturn   42  # four  spaces\n" + " " * 40 + "end",
    "Résumé: naïve café, 東京, Привет мир, 🙂 emoji and ümlauts.",
    "Tokens like <|endoftext|> and <fim_prefix> are plain text in documents.",
    "Line one\r\n\r\nLine three\n\n\n    indented\t\ttabbed",
]
LOGIT_PROMPTS = [
    "A chat between a curious human and an artificial intelligence assistant.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Les modèles de langue résument des documents longs.",
]


@dataclass
class PromptAgreement:
    prompt: str
    n_tokens: int
    nmse: float
    top1: float


@dataclass
class VerifyReport:
    path: Path
    tokenizer_checked: int = 0
    tokenizer_mismatches: list[str] = field(default_factory=list)
    roundtrip_failures: list[str] = field(default_factory=list)
    logits: list[PromptAgreement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.tokenizer_mismatches and not self.roundtrip_failures


def nmse(test: np.ndarray, reference: np.ndarray) -> float:
    """Normalised mean squared error: ||test - ref||^2 / ||ref||^2."""
    ref = reference.astype(np.float64)
    return float(np.sum((test.astype(np.float64) - ref) ** 2) / np.sum(ref ** 2))


def torch_logits(model, ids: list[int]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = model(torch.tensor([ids]))
    return out[0].float().numpy()


def check_tokenizer(llm, tokenizer, texts: list[str], report: VerifyReport) -> None:
    for text in texts:
        ours = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        report.tokenizer_checked += len(ours)
        if tokenizer is not None and ours != tokenizer.encode(text):
            report.tokenizer_mismatches.append(text)
        if detokenize(llm, ours).decode("utf-8", errors="replace") != text:
            report.roundtrip_failures.append(text)


def verify(path: str | Path, reference: str | Path | None = None, *, threads: int | None = None) -> VerifyReport:
    from models.tokenizer import XGenTokenizer

    report = VerifyReport(Path(path))
    try:
        tokenizer = XGenTokenizer(allow_download=False)
    except XGenError as exc:
        tokenizer = None
        report.notes.append(f"tokenizer parity skipped: {exc}")
    llm = load_llama(path, n_ctx=512, logits_all=reference is not None, n_threads=threads)
    check_tokenizer(llm, tokenizer, SAMPLE_TEXTS, report)
    if reference is not None:
        if tokenizer is None:
            raise XGenError("the logits check needs the XGen tokenizer; " + report.notes[-1])
        from models.checkpoint import CheckpointReader, find_checkpoint
        from models.config import ModelArgs
        from models.xgen import build_model, load_hf_weights

        args = ModelArgs.from_folder(reference)
        model = build_model(args)
        load_hf_weights(model, CheckpointReader(find_checkpoint(reference)))
        model.eval()
        for prompt in LOGIT_PROMPTS:
            ids = tokenizer.encode(prompt)
            ours, ref = llama_logits(llm, ids), torch_logits(model, ids)
            top1 = float(np.mean(ours.argmax(-1) == ref.argmax(-1)))
            report.logits.append(PromptAgreement(prompt, len(ids), nmse(ours, ref), top1))
    return report
