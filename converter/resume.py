"""What an interrupted pull leaves behind, so the next run only fetches what is missing.

Beside `.NAME.partial` (the GGUF being written) a record `.NAME.partial.json` says what the
partial is (repo, commit, type, metadata: its `fingerprint`), where its header ends with
the header's SHA-256, and, for each tensor written so far in file order, where it ends and
the CRC-32 of its bytes. The record is replaced atomically after each tensor is on disk,
so it never claims more than the partial holds. On the next run, a record whose
fingerprint matches is checked against the partial (header hash, every tensor's CRC-32)
and the longest valid prefix is kept; the rest is converted again, so the result is the
same bytes as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from models.atomic import partial_path

RECORD_VERSION = 1


def record_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial.json")


@dataclass
class ResumeRecord:
    fingerprint: dict
    header_end: int = 0
    header_sha256: str = ""
    tensors: list[tuple[str, int, int]] = field(default_factory=list)  # (GGUF name, end offset, crc32)

    @property
    def end(self) -> int:
        return self.tensors[-1][1] if self.tensors else self.header_end

    def save(self, out: Path) -> None:
        path = record_path(out)
        tmp = path.with_name(path.name + ".tmp")
        payload = {"version": RECORD_VERSION, "fingerprint": self.fingerprint, "header_end": self.header_end,
                   "header_sha256": self.header_sha256, "tensors": self.tensors}
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, path)

    @classmethod
    def load(cls, out: Path) -> "ResumeRecord | None":
        try:
            raw = json.loads(record_path(out).read_text())
            if raw.get("version") != RECORD_VERSION:
                return None
            tensors = [(str(n), int(e), int(c)) for n, e, c in raw["tensors"]]
            return cls(dict(raw["fingerprint"]), int(raw["header_end"]), str(raw["header_sha256"]), tensors)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def sha256_prefix(path: Path, end: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = end
        while remaining:
            block = f.read(min(remaining, 1 << 20))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest() if remaining == 0 else ""


def crc32_range(f, start: int, end: int) -> int | None:
    f.seek(start)
    crc, remaining = 0, end - start
    while remaining:
        block = f.read(min(remaining, 8 << 20))
        if not block:
            return None
        crc = zlib.crc32(block, crc)
        remaining -= len(block)
    return crc


def usable_record(out: Path, fingerprint: dict, planned_names: list[str]) -> ResumeRecord | None:
    """The record of an earlier run of the same pull, trimmed to what the partial really holds.

    None when there is nothing to resume (no partial, another source or type, a damaged
    header): the caller starts over."""
    partial = partial_path(out)
    record = ResumeRecord.load(out)
    if record is None or record.fingerprint != fingerprint or not partial.is_file():
        return None
    if not record.header_end or sha256_prefix(partial, record.header_end) != record.header_sha256:
        return None
    kept: list[tuple[str, int, int]] = []
    start = record.header_end
    with open(partial, "rb") as f:
        for (name, end, crc), expected in zip(record.tensors, planned_names):
            if name != expected or crc32_range(f, start, end) != crc:
                break
            kept.append((name, end, crc))
            start = end
    record.tensors = kept
    return record


def discard(out: Path) -> None:
    partial_path(out).unlink(missing_ok=True)
    record_path(out).unlink(missing_ok=True)
    record_path(out).with_name(record_path(out).name + ".tmp").unlink(missing_ok=True)
