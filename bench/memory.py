"""Peak memory and extra disk of a child process, sampled from /proc (Linux)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunStats:
    seconds: float
    peak_anon_kib: int  # RssAnon: memory the process really owns
    peak_rss_kib: int  # VmRSS: also counts reclaimable file pages of memory-mapped shards
    peak_disk_bytes: int  # largest total size of files in the watched folder
    returncode: int


def _status(pid: int) -> dict[str, int]:
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return fields


def _folder_bytes(folder: Path | None) -> int:
    if folder is None:
        return 0
    total = 0
    for p in folder.iterdir():
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


def measure(cmd: list[str], watch: Path | None = None, interval: float = 0.02, env=None) -> RunStats:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    anon = rss = disk = 0
    while proc.poll() is None:
        s = _status(proc.pid)
        anon = max(anon, s.get("RssAnon", 0))
        rss = max(rss, s.get("VmRSS", 0))
        disk = max(disk, _folder_bytes(watch))
        time.sleep(interval)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return RunStats(seconds, anon, rss, disk, proc.returncode)
