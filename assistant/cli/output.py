"""What the command line writes, and how.

- Everything a command prints goes through `printable_streams`: the standard output and
  error are wrapped so that no control character from outside (a reply, a file name, a
  server's error) reaches the terminal; see `assistant/safetext.py`. The program's own
  line rewriting (progress) writes its carriage return past the filter, through
  `status_line`.
- Writing to a standard output that cannot take it (`> /dev/full`, a closed pipe): a
  failed write becomes one line on stderr and a non-zero exit, not a traceback; the
  standard output is then pointed at /dev/null so that Python's own flush at exit does
  not fail a second time ("Exception ignored ... OSError").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator

import click

from assistant.safetext import printable, valid_text
from models.errors import XGenError


class PrintableStream:
    """A text stream that drops control characters (but tab and newline) from what is
    written to it; everything else is the wrapped stream's."""

    def __init__(self, raw):
        self.raw = raw

    def write(self, text: str) -> int:
        # valid_text: a stray byte of a Latin-1 argument would make a UTF-8 stream raise.
        self.raw.write(printable(valid_text(text)))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self.raw, name)


@contextlib.contextmanager
def printable_streams() -> Iterator[None]:
    """Wrap sys.stdout and sys.stderr in `PrintableStream`s while a command runs."""
    saved = sys.stdout, sys.stderr
    if sys.stdout is not None and not isinstance(sys.stdout, PrintableStream):
        sys.stdout = PrintableStream(sys.stdout)
    if sys.stderr is not None and not isinstance(sys.stderr, PrintableStream):
        sys.stderr = PrintableStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def raw_stderr():
    """The standard error past the control-character filter, for the program's own
    progress display (carriage returns; tqdm); what it shows from outside must be
    passed through `printable` first."""
    stream = sys.stderr
    return stream.raw if isinstance(stream, PrintableStream) else stream


def status_line(text: str, *, end: str = "") -> None:
    """Rewrite the current stderr line with `text` (made printable)."""
    stream = raw_stderr()
    if stream is None:
        return
    try:
        stream.write("\r" + printable(text) + end)
        stream.flush()
    except (OSError, ValueError):
        pass  # progress is a courtesy: a closed stderr must not stop the job


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


class StatusLine:
    """One stderr line rewritten in place (progress, a wait): each text is padded to blank
    what the text before it left on the line, and `clear` blanks it when it is done."""

    def __init__(self) -> None:
        self.width = 0  # characters shown on the line now

    def show(self, text: str, *, end: str = "") -> None:
        # Within the terminal's width: a line that wraps is not rewritten by "\r", and each
        # update would start a new line (an 80-column tmux pane showed one per update).
        room = shutil.get_terminal_size(fallback=(200, 24)).columns - 1
        if len(text) > room:
            text = text[:max(room - 1, 0)] + "…"
        status_line(text.ljust(min(self.width, room)), end=end)
        self.width = 0 if end else len(text)

    def clear(self) -> None:
        if self.width:
            status_line(" " * self.width, end="\r")
            self.width = 0


def wait_printer():
    """An `on_wait` for the remote engine: one stderr line, rewritten as the wait goes
    on ("waiting for http://...: 12 s"), cleared when the server answers."""
    line = StatusLine()

    def show(message: str | None) -> None:
        if message is None:
            line.clear()
        else:
            line.show(message + "…")

    return show
