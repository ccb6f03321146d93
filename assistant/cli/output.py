"""Writing to the standard output when it cannot take it (`> /dev/full`, a closed pipe).

A failed write becomes one line on stderr and a non-zero exit, not a traceback; the
standard output is then pointed at /dev/null so that Python's own flush at exit does
not fail a second time ("Exception ignored ... OSError").
"""

from __future__ import annotations

import os
import sys

import click

from models.errors import XGenError


def stdout_failed(exc: OSError) -> XGenError:
    """Give up on the standard output after `exc`; the error to report."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # no real file descriptor (a test runner's stream): nothing to silence
    return XGenError(f"cannot write to the standard output: {exc.strerror or exc}")


def write_stdout(text: str) -> None:
    """Print `text` and flush it now, so a full disk or a closed pipe is seen here."""
    try:
        click.echo(text, nl=False)
        sys.stdout.flush()
    except OSError as exc:
        raise stdout_failed(exc) from None


def flush_stdout() -> None:
    """Flush what the command printed (XGenError if the standard output cannot take it)."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        raise stdout_failed(exc) from None
    except ValueError:
        pass  # closed


def stdout_is_broken(exc: OSError) -> bool:
    """Whether `exc` (raised while a command ran) came from writing the standard output:
    raised by a write to file descriptor 1 (click.echo's `file`), or the standard output
    still refuses to flush."""
    tb = exc.__traceback__
    while tb is not None:
        target = tb.tb_frame.f_locals.get("file")
        if tb.tb_frame.f_code.co_name == "echo" and target is not None and _is_stdout(target):
            return True
        tb = tb.tb_next
    try:
        sys.stdout.flush()
    except OSError:
        return True
    except ValueError:
        return False
    return False


def _is_stdout(stream) -> bool:
    if stream is sys.stdout or stream is sys.__stdout__:
        return True
    try:
        return stream.fileno() == sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False


def wait_printer():
    """An `on_wait` for the remote engine: one stderr line, rewritten as the wait goes
    on ("waiting for http://...: 12 s"), cleared when the server answers."""
    shown = [0]

    def show(message: str | None) -> None:
        if message is None:
            if shown[0]:
                click.echo("\r" + " " * shown[0] + "\r", err=True, nl=False)
                shown[0] = 0
            return
        line = message + "…"
        click.echo("\r" + line.ljust(shown[0]), err=True, nl=False)
        shown[0] = max(shown[0], len(line))

    return show
