"""A lazy reader for Hugging Face checkpoints: one tensor at a time, never the model.

XGen ships fp32 pickle shards (`pytorch_model-0000N-of-0000M.bin`) with an index; other
copies may be safetensors. Both are memory-mapped, so a tensor costs memory only
while the caller holds it.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from models.errors import XGenError, unsafe_pickle_error
from models.paths import leaves_folder

# Buffers that HF stores beside the weights; recomputed, never converted.
NON_WEIGHT_SUFFIXES = ("rotary_emb.inv_freq", "rotary_emb.cos_cached", "rotary_emb.sin_cached")


def is_weight(name: str) -> bool:
    return not name.endswith(NON_WEIGHT_SUFFIXES)


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    shards: tuple[Path, ...]
    format: str  # "safetensors" or "pytorch"

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.shards)


def find_checkpoint(folder: str | Path) -> Checkpoint:
    """Locate the weight shards of a checkpoint folder, preferring safetensors."""
    folder = Path(folder)
    if not folder.exists():
        raise XGenError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise XGenError(f"{folder}: not a folder; give a checkpoint folder or a Hub id")
    for fmt, index_name, single, pattern in (
        ("safetensors", "model.safetensors.index.json", "model.safetensors", "*.safetensors"),
        ("pytorch", "pytorch_model.bin.index.json", "pytorch_model.bin", "pytorch_model*.bin"),
    ):
        index = folder / index_name
        if index.is_file():
            return Checkpoint(folder, _shards_from_index(index), fmt)
        if (folder / single).is_file():
            return Checkpoint(folder, (folder / single,), fmt)
        found = sorted(folder.glob(pattern))
        if found:
            return Checkpoint(folder, tuple(found), fmt)
    raise XGenError(f"{folder}: no weights found (expected pytorch_model*.bin or *.safetensors)")


def _shards_from_index(index: Path) -> tuple[Path, ...]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise XGenError(f"{index}: not a valid checkpoint index ({exc})") from None
    if not isinstance(weight_map, dict) or not all(isinstance(n, str) for n in weight_map.values()):
        raise XGenError(f"{index}: not a valid checkpoint index (its weight_map does not name files)")
    names = sorted(set(weight_map.values()))
    for name in names:
        if leaves_folder(name):
            raise XGenError(f"{index}: shard {name!r} is outside the checkpoint folder; refused "
                            "(an index names files beside it)")
    shards = tuple(index.parent / n for n in names)
    missing = [p.name for p in shards if not p.is_file()]
    if missing:
        raise XGenError(f"{index.parent}: shard {missing[0]} listed in {index.name} is missing")
    return shards


class CheckpointReader:
    """Random access to every weight of a checkpoint, all shards memory-mapped.

    Opening costs address space, not memory: tensor bytes are read from disk when a
    caller touches them and stay reclaimable page cache.
    """

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self._where: dict[str, tuple[int, str]] = {}  # name -> (shard index, name)
        self._pickles: dict[int, dict[str, torch.Tensor]] = {}
        self._handles: dict[int, object] = {}
        for i, shard in enumerate(checkpoint.shards):
            if checkpoint.format == "safetensors":
                handle = _open_safetensors(shard)
                self._handles[i] = handle
                names = list(handle.keys())
            else:
                state = load_pickle_shard(shard)
                self._pickles[i] = state
                names = list(state)
            for name in names:
                if is_weight(name):
                    self._where[name] = (i, name)

    def names(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        shard, _ = self._where[name]
        if shard in self._pickles:
            return tuple(self._pickles[shard][name].shape)
        return tuple(self._handles[shard].get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        shard, _ = self._where[name]
        if shard in self._pickles:
            return self._pickles[shard][name]
        from safetensors import SafetensorError

        try:
            return self._handles[shard].get_tensor(name)
        except (SafetensorError, OSError) as exc:
            raise XGenError(f"{self.checkpoint.shards[shard]}: tensor {name} is unreadable "
                            f"({_first_line(exc)})") from None

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in self._where:
            yield name, self.get(name)


def iter_tensors(checkpoint: Checkpoint) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) for every weight, shard by shard, skipping buffers."""
    yield from CheckpointReader(checkpoint)


def load_pickle_shard(shard: Path) -> dict[str, torch.Tensor]:
    """Memory-map one `.bin` shard; tensor data stays on disk until touched."""
    try:
        state = torch.load(shard, mmap=True, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        # torch says so only in words: "Weights only load failed ... Unsupported global: GLOBAL os.system".
        if "Weights only load failed" in str(exc):
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            raise unsafe_pickle_error(shard, found.group(1) if found else "something") from None
        raise XGenError(f"{shard}: cannot read this shard; it may be truncated or corrupt "
                        f"({_first_line(exc)}); download it again") from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise XGenError(f"{shard}: cannot read this shard; it may be truncated or corrupt "
                        f"({_first_line(exc)}); download it again") from None
    if not isinstance(state, dict):
        raise XGenError(f"{shard}: expected a state dict of tensors")
    return state


def _open_safetensors(shard: Path):
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(str(shard), framework="pt", device="cpu")
    except (SafetensorError, OSError) as exc:
        raise XGenError(f"{shard}: cannot read this shard; it may be truncated or corrupt "
                        f"({_first_line(exc)}); download it again") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def folder_fingerprint(folder: str | Path) -> str:
    """A cheap identity of an HF checkpoint folder: its config.json, and the name and size of
    every weight file (reading 28 GB of shards to hash them is out of the question)."""
    import hashlib

    folder = Path(folder)
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for f in sorted(folder.iterdir()):
        if f.suffix in (".bin", ".safetensors", ".json") and f.is_file():
            digest.update(f"{f.name}:{f.stat().st_size};".encode())
    return digest.hexdigest()[:32]
