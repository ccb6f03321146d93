"""Synthetic XGen-shaped models for the benchmarks, built once into bench/.cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from converter.convert import convert
from models.config import TRANSFORMER_CONFIGS
from models.synthetic import write_checkpoint

CACHE = Path(__file__).resolve().parent / ".cache"


def checkpoint(shapes: str, n_layers: int | None = None) -> Path:
    args = TRANSFORMER_CONFIGS[shapes]
    if n_layers is not None:
        args = replace(args, n_layers=n_layers)
    folder = CACHE / f"{shapes}-{args.n_layers}L-hf"
    if not (folder / "pytorch_model.bin.index.json").is_file():
        write_checkpoint(folder, args, n_shards=2, seed=0)
    return folder


def gguf(shapes: str, file_type: str = "q4_k_m", n_layers: int | None = None) -> Path:
    src = checkpoint(shapes, n_layers)
    out = CACHE / f"{src.name[:-3]}-{file_type}.gguf"
    if not out.is_file():
        convert(src, out, file_type)
    return out


def big_gguf(shapes: str, file_type: str = "q4_k_m", n_layers: int | None = None) -> Path:
    """Like `gguf`, but deletes the (multi-GB) HF checkpoint once the GGUF exists."""
    import shutil

    args = TRANSFORMER_CONFIGS[shapes]
    if n_layers is not None:
        args = replace(args, n_layers=n_layers)
    folder = CACHE / f"{shapes}-{args.n_layers}L-hf"
    out = CACHE / f"{folder.name[:-3]}-{file_type}.gguf"
    if not out.is_file():
        out = gguf(shapes, file_type, n_layers)
    if folder.is_dir():
        shutil.rmtree(folder)
    return out


def q4_k_m_gguf(path: Path | None, quick: bool) -> Path:
    """The GGUF a llama.cpp benchmark runs: `path` if given, else the "small" model's
    Q4_K_M (quick) or the 7B-shaped one."""
    if path:
        return path
    return gguf("small", "q4_k_m") if quick else big_gguf("xgen-7b-8k", "q4_k_m")


def gguf_tensor_bytes(path: Path) -> dict[str, int]:
    """Bytes of every tensor in a GGUF (name -> n_bytes)."""
    from gguf import GGUFReader

    return {t.name: int(t.n_bytes) for t in GGUFReader(path).tensors}
