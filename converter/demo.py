"""The demo model: a tiny random XGen-shaped checkpoint, converted and run end to end."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from converter.convert import convert
from converter.verify import load_llama, verify
from models.config import TRANSFORMER_CONFIGS
from models.errors import XGenError
from models.paths import data_dir, models_dir
from models.synthetic import write_checkpoint

DEMO_NAME = "xgen-demo"


def demo_checkpoint() -> Path:
    """The demo's HF-layout checkpoint, written once into the data directory."""
    folder = data_dir() / "demo" / f"{DEMO_NAME}-hf"
    if not (folder / "pytorch_model.bin.index.json").is_file():
        try:
            write_checkpoint(folder, TRANSFORMER_CONFIGS["tiny"], n_shards=2, seed=0)
        except OSError as exc:  # a read-only data folder, a full disk
            raise XGenError(f"cannot write the demo checkpoint into {folder.parent}: {exc.strerror or exc}; "
                            "point XGEN_HOME at a writable folder") from None
    return folder


def demo_gguf_path(file_type: str = "q4_k_m") -> Path:
    return models_dir() / f"{DEMO_NAME}-{file_type}.gguf"


def build_demo(file_type: str = "q4_k_m", echo: Callable[[str], None] = print) -> Path:
    started = time.perf_counter()
    folder = demo_checkpoint()
    echo(f"demo checkpoint: {folder}")
    out = demo_gguf_path(file_type)
    result = convert(folder, out, file_type, force=True, name=DEMO_NAME)
    echo(f"converted to {out.name} ({result.nbytes / 2**20:.1f} MiB) in {result.seconds:.1f} s")
    report = verify(out, folder)
    echo(f"tokenizer: {report.tokenizer_checked} tokens, {len(report.tokenizer_mismatches)} mismatches")
    for a in report.logits:
        echo(f"logits vs PyTorch: NMSE {a.nmse:.1e}, top-1 agreement {a.top1:.0%} ({a.n_tokens} tokens)")
    llm = load_llama(out, n_ctx=256)
    prompt = "The assistant summarizes the document:"
    text = llm(prompt, max_tokens=16, temperature=0.0)["choices"][0]["text"]
    echo(f"generated (random weights, so nonsense): {prompt!r} -> {text!r}")
    echo(f"demo done in {time.perf_counter() - started:.1f} s; model at {out}")
    return out
