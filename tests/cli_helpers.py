"""Running `xgen` in tests and checking its refusals: one `error:` line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from assistant.cli import main

ROOT = Path(__file__).resolve().parents[1]


def xgen(*args: str, env: dict | None = None, timeout: float = 60, stdin=subprocess.DEVNULL,
         stdout=subprocess.PIPE, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run `xgen ARGS` in a subprocess; a hang fails the test (TimeoutExpired) instead of the run."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    full_env.pop("XGEN_MODEL", None)
    return subprocess.run([*prefix, sys.executable, "-m", "assistant.cli", *args], cwd=ROOT, env=full_env,
                          stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=timeout, text=True)


def one_error_line(stderr: str) -> str:
    """The run's stderr is exactly one `error: ...` line (no traceback, no "Exception ignored")."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def assert_one_line_failure(result) -> str:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    return errors[0]


def assert_one_line_error(result, *fragments: str) -> None:
    """A click result that failed with one line, `error: ...`, holding each fragment."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]
