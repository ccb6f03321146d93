"""The documentation and the tree it describes: every `xgen` command the README and docs/
show exists with the options shown, and no file holds an unresolved merge conflict."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from assistant.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.M | re.S)


# ---------------------------------------------------------------- commands shown


def shown_commands(markdown: str) -> list[list[str]]:
    """The arguments after `xgen` of each command in the shell code blocks, comments dropped
    and pipelines split (`cat x | xgen summarize -` gives ["summarize", "-"])."""
    commands = []
    for block in SHELL_BLOCK.findall(markdown):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            segment: list[str] = []
            for word in words + ["&&"]:
                if word in ("&&", "||", "|", ";"):
                    if segment and Path(segment[0]).name == "xgen":
                        commands.append(segment[1:])
                    segment = []
                else:
                    segment.append(word)
    return commands


def command_problem(args: list[str]) -> str | None:
    """Walk `args` down xgen's command tree as click would; a line saying what does not
    exist (a subcommand, an option), or None when the whole command does."""
    command: click.Command = main
    path: list[str] = []
    words = list(args)
    while words:
        word = words.pop(0)
        if word == "--":
            break
        if word.startswith("-") and word != "-":
            name = word.split("=", 1)[0]
            option = next((p for p in command.params if isinstance(p, click.Option)
                           and name in p.opts + p.secondary_opts), None)
            if option is None:
                return f"xgen {' '.join(path)}: no option {name}".replace("  ", " ")
            if not (option.is_flag or option.count or "=" in word):
                words = words[option.nargs:]
            continue
        if isinstance(command, click.Group):
            sub = command.get_command(click.Context(command), word)
            if sub is None:
                return f"xgen {' '.join(path + [word])}: no such command"
            command, path = sub, path + [word]
    return None


def help_runs(path: list[str]) -> int:
    return CliRunner().invoke(main, [*path, "--help"]).exit_code


def subcommand_path(args: list[str]) -> list[str]:
    """The subcommand names in `args` (["sessions", "export"] for `sessions export 3f2a -o x`)."""
    command: click.Command = main
    path = []
    for word in args:
        if isinstance(command, click.Group) and not word.startswith("-"):
            sub = command.get_command(click.Context(command), word)
            if sub is not None:
                command, path = sub, path + [word]
    return path


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_xgen_command_shown_exists(document):
    commands = shown_commands(document.read_text())
    problems = [problem for args in commands if (problem := command_problem(args))]
    assert problems == []
    for path in {tuple(subcommand_path(args)) for args in commands}:
        assert help_runs(list(path)) == 0, f"xgen {' '.join(path)} --help failed"


def test_the_readme_shows_the_demo_the_pull_and_the_everyday_commands():
    shown = {tuple(subcommand_path(args)) for args in shown_commands((ROOT / "README.md").read_text())}
    assert {("demo",), ("pull",), (), ("summarize",), ("ask",), ("chat",)} <= shown


def test_the_command_check_finds_what_does_not_exist():
    markdown = ("```bash\n"
                ".venv/bin/xgen summarize report.pdf --form bullets   # fine\n"
                "cat x | xgen summarize - --no-such-flag\n"
                "xgen sessions list && xgen sessions nosuch 3f2a\n"
                "xgen --model FILE nosuch\n"
                "echo xgen is not run here\n"
                "```\n"
                "```text\nxgen nosuch in a text block is a picture, not a command\n```\n")
    commands = shown_commands(markdown)
    assert commands == [["summarize", "report.pdf", "--form", "bullets"], ["summarize", "-", "--no-such-flag"],
                        ["sessions", "list"], ["sessions", "nosuch", "3f2a"], ["--model", "FILE", "nosuch"]]
    assert [command_problem(args) for args in commands] == [
        None, "xgen summarize: no option --no-such-flag", None, "xgen sessions nosuch: no such command",
        "xgen nosuch: no such command"]


def test_the_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    assert ".venv/bin/python -m pytest -q" in ci
    assert "```bash\n.venv/bin/python -m pytest -q\n```" in readme
    assert "```bash\n./setup.sh && .venv/bin/xgen demo\n```" in readme


# ---------------------------------------------------------------- merge conflicts

# Built, not written out, so that this file does not hold the markers it looks for.
CONFLICT_MARKERS = (b"<" * 7 + b" ", b"=" * 7, b">" * 7 + b" ")


def conflict_lines(data: bytes) -> list[int]:
    """1-based numbers of the lines that are merge-conflict markers."""
    found = []
    for number, line in enumerate(data.splitlines(), 1):
        if line.startswith(CONFLICT_MARKERS[0]) or line.startswith(CONFLICT_MARKERS[2]) \
                or line.rstrip() == CONFLICT_MARKERS[1]:
            found.append(number)
    return found


def tracked_files() -> list[Path]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if listing.returncode == 0:
        return [ROOT / name for name in listing.stdout.decode().split("\0") if name]
    # Not a git checkout (an unpacked archive): every file but the environment and caches.
    skip = {".git", ".venv", "__pycache__", ".cache", ".pytest_cache"}
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip]
        files += [Path(folder) / name for name in names]
    return files


def test_no_tracked_file_holds_a_merge_conflict():
    files = tracked_files()
    assert ROOT / "README.md" in files
    conflicts = {str(path.relative_to(ROOT)): lines for path in files
                 if path.is_file() and (lines := conflict_lines(path.read_bytes()))}
    assert conflicts == {}


def test_the_conflict_check_finds_each_marker():
    ours, sep, theirs = (m.decode() for m in CONFLICT_MARKERS)
    text = f"a\n{ours}HEAD\nb\n{sep}\nc\n{theirs}wip-pull\nd\n"
    assert conflict_lines(text.encode()) == [2, 4, 6]
    assert conflict_lines(f"x\n{sep}\r\n".encode()) == [2]
    assert conflict_lines(b"a heading\n=========\n    <<<<<<< indented\n") == []
