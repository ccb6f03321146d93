"""Check a converted GGUF: does llama.cpp tokenize and compute like the original model?

Tokenizer: llama.cpp's tokens against the tiktoken XGen tokenizer, and detokenizing
back to the same text. Logits (given the HF source): llama.cpp against the fp32 PyTorch
model on the same token ids, as NMSE and top-1 agreement per prompt. The file fails
when any prompt's NMSE exceeds the bound for its type (converter.quant.FILE_TYPES,
the table the tests use too). The reference is computed layer by layer from the
memory-mapped checkpoint (models/streamed.py), so a 7B model verifies on a laptop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converter.quant import file_type_of, ftype_label
from models.errors import XGenError
from models.gguf_file import read_gguf
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
    file_type: str = ""  # our name (q4_k_m ...) or llama.cpp's for a type we do not make
    nmse_bound: float | None = None  # None: no bound known for file_type
    logits_checked: bool = False  # a reference was given and the logits compared

    @property
    def problems(self) -> list[str]:
        """Why the file fails, one short phrase each; empty when it passes."""
        found = []
        if self.tokenizer_mismatches:
            found.append(f"tokenizes {len(self.tokenizer_mismatches)} of the sample texts unlike XGen")
        if self.roundtrip_failures:
            found.append(f"does not detokenize {len(self.roundtrip_failures)} of the sample texts back")
        if self.logits_checked:
            if self.nmse_bound is None:
                found.append(f"logits not judged: no NMSE bound for file type {self.file_type}")
            else:
                worst = max(self.logits, key=lambda a: a.nmse if np.isfinite(a.nmse) else np.inf)
                if not np.isfinite(worst.nmse) or worst.nmse > self.nmse_bound:
                    error = (f"{worst.nmse:.2e} exceeds" if np.isfinite(worst.nmse)
                             else "is not finite (NaN/inf logits), so above")
                    found.append(f"logits NMSE {error} the {self.file_type} bound "
                                 f"{self.nmse_bound:.1e} (prompt {worst.prompt[:30]!r}); the weights "
                                 "differ from the reference")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems


def nmse(test: np.ndarray, reference: np.ndarray) -> float:
    """Normalised mean squared error: ||test - ref||^2 / ||ref||^2."""
    ref = reference.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # damaged files give inf/NaN: a failure, not a warning
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


def check_same_model(path: str | Path, reference: str | Path) -> None:
    """The GGUF's shapes are the reference checkpoint's, or a one-line XGenError."""
    from models.checkpoint import find_checkpoint
    from models.config import ModelArgs
    from models.gguf_file import parse_header

    args = ModelArgs.from_folder(reference)
    find_checkpoint(reference)
    meta, _ = parse_header(Path(path))
    for key, ours in (("llama.block_count", args.n_layers), ("llama.embedding_length", args.dim),
                      ("llama.feed_forward_length", args.intermediate_size),
                      ("llama.attention.head_count", args.n_heads)):
        if key in meta and int(meta[key]) != ours:
            raise XGenError(f"{path} has {key.split('.', 1)[1]} {meta[key]} and {reference} has {ours}; "
                            "it was not converted from this checkpoint")


def verify(path: str | Path, reference: str | Path | None = None, *, threads: int | None = None) -> VerifyReport:
    from models.tokenizer import XGenTokenizer

    report = VerifyReport(Path(path))
    summary = read_gguf(path)
    if reference is not None:
        check_same_model(path, reference)  # before the slow parts
    ftype = file_type_of(summary.file_type)
    report.file_type = ftype.name if ftype else ftype_label(summary.file_type)
    report.nmse_bound = ftype.logits_nmse_bound if ftype else None
    try:
        tokenizer = XGenTokenizer(allow_download=False)
    except XGenError as exc:
        tokenizer = None
        report.notes.append(f"tokenizer parity skipped: {exc}")
    if reference is not None and tokenizer is None:
        raise XGenError("the logits check needs the XGen tokenizer; " + report.notes[-1])
    llm = load_llama(path, n_ctx=512, logits_all=reference is not None, n_threads=threads)
    check_tokenizer(llm, tokenizer, SAMPLE_TEXTS, report)
    if reference is not None:
        from models.streamed import reference_logits

        prompts = [(prompt, tokenizer.encode(prompt)) for prompt in LOGIT_PROMPTS]
        # One pass over the checkpoint for all prompts: each layer is read once.
        references = reference_logits(reference, [ids for _, ids in prompts])
        for (prompt, ids), ref in zip(prompts, references):
            ref = ref.numpy()
            ours = llama_logits(llm, ids)
            if ours.shape != ref.shape:
                raise XGenError(f"{path} has {ours.shape[-1]} logits per token and {reference} has "
                                f"{ref.shape[-1]}; it was not converted from this checkpoint")
            top1 = float(np.mean(ours.argmax(-1) == ref.argmax(-1)))
            report.logits.append(PromptAgreement(prompt, len(ids), nmse(ours, ref), top1))
        report.logits_checked = True
    return report
