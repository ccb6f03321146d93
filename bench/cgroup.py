"""Run a child process under a memory limit (a Linux memory cgroup, v1 or v2).

Peak VmRSS overstates what a memory-mapped model needs: file pages stay resident while
memory is free even when they are never read again (llama.cpp copies most weights into
a repacked anonymous buffer at load). The decisive test of "fits in N GB" is to run in
a cgroup that cannot hold more than N bytes, anonymous memory and page cache together,
and see that the run completes (no OOM kill) at its usual speed.

File pages already cached by an earlier process stay charged to that process's cgroup,
so the model file is evicted from the page cache first (POSIX_FADV_DONTNEED) and every
page the child reads is charged to its cgroup.
"""

from __future__ import annotations

import os
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/memory")
V2_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))


def _v2_root() -> Path | None:
    for root in V2_ROOTS:
        controllers = root / "cgroup.controllers"
        if controllers.is_file() and "memory" in controllers.read_text().split():
            return root
    return None


def available() -> str | None:
    """Why a memory cgroup cannot be made here, or None when it can."""
    if (V1_ROOT / "memory.limit_in_bytes").is_file() and os.access(V1_ROOT, os.W_OK):
        return None
    root = _v2_root()
    if root is not None and os.access(root, os.W_OK):
        return None
    return "no writable memory cgroup (v1 /sys/fs/cgroup/memory or v2 with the memory controller)"


def evict_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class MemoryLimit:
    """`with MemoryLimit(8e9) as limit:` ... `Popen(..., preexec_fn=limit.enter)`; then `limit.stats()`."""

    def __init__(self, limit_bytes: float, name: str = "xgen-bench"):
        self.limit = int(limit_bytes)
        self.v1 = (V1_ROOT / "memory.limit_in_bytes").is_file()
        root = V1_ROOT if self.v1 else _v2_root()
        if root is None:
            raise RuntimeError(available())
        self.path = root / f"{name}-{os.getpid()}"

    def __enter__(self) -> MemoryLimit:
        self.path.mkdir()
        if self.v1:
            (self.path / "memory.limit_in_bytes").write_text(str(self.limit))
            swap = self.path / "memory.memsw.limit_in_bytes"
            if swap.is_file():  # no swapping out of the limit either
                swap.write_text(str(self.limit))
        else:
            (self.path / "memory.max").write_text(str(self.limit))
            (self.path / "memory.swap.max").write_text("0")
        return self

    def enter(self) -> None:
        """Move the calling process into the cgroup (a Popen preexec_fn: runs in the child)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def _pairs(self, name: str) -> dict[str, int]:
        return {k: int(v) for k, v in (line.split() for line in (self.path / name).read_text().splitlines())}

    def stats(self) -> dict[str, int]:
        """Peak bytes charged (anonymous + page cache), times the limit was hit, OOM kills,
        and major page faults (pages read back from disk: many of them would mean the
        limit made the run thrash on the model file)."""
        stat = self._pairs("memory.stat")
        if self.v1:
            return {"peak_bytes": int((self.path / "memory.max_usage_in_bytes").read_text()),
                    "limit_hits": int((self.path / "memory.failcnt").read_text()),
                    "oom_kills": self._pairs("memory.oom_control").get("oom_kill", 0),
                    "major_faults": stat.get("total_pgmajfault", stat.get("pgmajfault", 0))}
        events = self._pairs("memory.events")
        peak = self.path / "memory.peak"
        return {"peak_bytes": int(peak.read_text()) if peak.is_file() else 0,
                "limit_hits": events.get("max", 0), "oom_kills": events.get("oom_kill", 0),
                "major_faults": stat.get("pgmajfault", 0)}

    def __exit__(self, *exc) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass  # a process still in it; the kernel removes nothing, the name is unique anyway
