"""Shared bits of the benchmark scripts: machine description, results file, statistics."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def machine() -> str:
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu_model()}), "
            f"{mem_total_gib():.0f} GiB RAM, Python {platform.python_version()}")


def command_line() -> str:
    argv = [".venv/bin/python", os.path.relpath(sys.argv[0])] + sys.argv[1:]
    return " ".join(shlex.quote(a) for a in argv)


def append_results(title: str, body: str) -> None:
    """Append a dated section (command, machine, body) to bench/RESULTS.md."""
    today = _dt.date.today().isoformat()
    text = (f"\n## {title}\n\n{today}, `{command_line()}`\n\nMachine: {machine()}; "
            f"load average at the end {os.getloadavg()[0]:.1f}.\n\n{body.rstrip()}\n")
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(text)


def median(xs) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope (y = a + b x)."""
    if len(xs) < 2:
        return (ys[0] if ys else 0.0), 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def kib_to_gib(kib: int) -> float:
    return kib / 2**20
