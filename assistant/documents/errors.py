"""One-line messages shared by the loaders: sizes, exceptions, "too large"."""

from __future__ import annotations

from models.errors import XGenError


def format_size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"  # pragma: no cover


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def too_large(label: str, size: int | None, max_bytes: int) -> XGenError:
    what = f"{format_size(size)}" if size is not None else f"more than {format_size(max_bytes)}"
    return XGenError(
        f"{label} is too large: {what} (the limit is {format_size(max_bytes)}); "
        "split it into smaller files"
    )
