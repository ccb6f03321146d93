"""What this process may use of the machine: CPU cores and memory.

`os.cpu_count()` counts every logical CPU of the machine: SMT siblings (llama.cpp runs
no faster on them, often slower), CPUs outside this process's affinity mask, and CPUs
beyond a container's quota. `usable_cores` counts one thread per physical core inside
the affinity mask, capped by a cgroup CPU quota; `available_memory` is what can be
allocated without swapping, capped by a cgroup memory limit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """CPUs allowed by a cgroup v2 quota (`cpu.max`: "quota period"), or None if unlimited."""
    text = _read(root / "cpu.max")
    if not text:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def usable_cores(root: Path = CGROUP, sys_cpu: Path = Path("/sys/devices/system/cpu")) -> int:
    """Physical cores in this process's affinity mask, capped by a cgroup CPU quota."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = list(range(os.cpu_count() or 1))
    cores = {_read(sys_cpu / f"cpu{c}" / "topology" / "thread_siblings_list") or f"cpu{c}" for c in cpus}
    n = len(cores)
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        n = min(n, max(1, math.floor(limit)))
    return max(1, n)


def available_memory(root: Path = CGROUP, meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes that can be allocated now without swapping (None where it cannot be told)."""
    available = None
    text = _read(meminfo)
    for line in (text or "").splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) * 1024
    limit, current = _read(root / "memory.max"), _read(root / "memory.current")
    if limit and limit != "max" and current:
        used = int(current)
        for line in (_read(root / "memory.stat") or "").splitlines():
            if line.startswith("inactive_file "):  # page cache the kernel reclaims first
                used -= int(line.split()[1])
        room = max(0, int(limit) - max(0, used))
        available = room if available is None else min(available, room)
    return available
