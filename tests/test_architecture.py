"""The layering the project promises, checked on every test run: import-linter's contracts
in pyproject.toml, no import cycle between any two modules (lazy imports and imports for
type checking included), and no module over 450 lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("assistant", "converter", "models")

# Import cycles known and being removed, each named by its modules. Any other cycle fails
# the test, and so does a listed one that is gone: then take it off the list.
KNOWN_CYCLES: list[list[str]] = []

MAX_LINES = 450
# Modules over MAX_LINES, being split, by path: the list only shrinks (a listed module back
# under the limit fails the test until it is taken off).
OVER_THE_LIMIT: set[str] = set()


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_face_contracts_catch_a_face_reaching_below_the_jobs_and_a_new_core_module(tmp_path):
    """The contracts on the faces, run on a small tree shaped like assistant/: a face that
    imports documents, and a core module no list names that imports a face or click,
    each break them; the same tree without those imports keeps them."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = [c for c in config["contracts"] if "face" in c["name"]]
    assert len(contracts) == 2
    tree = tmp_path / "tree"
    modules = {"cli/__init__": "", "cli/app": "import click\nfrom assistant.tui import app\n",
               "cli/assist": "import click\nfrom assistant import session\n", "tui/__init__": "",
               "tui/app": "import textual\nfrom assistant import session\n", "session": "from assistant import documents\n",
               "documents": "", "chunking": "", "summarize": "", "engines/__init__": "", "brand_new": ""}
    for name, text in modules.items():
        path = tree / "assistant" / f"{name}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tree / "assistant" / "__init__.py").write_text("")

    def lint(extra: dict[str, str]) -> str:
        for name, text in extra.items():
            (tree / "assistant" / f"{name}.py").write_text(modules[name] + text)
        toml = ["[tool.importlinter]", 'root_packages = ["assistant"]', "include_external_packages = true"]
        for contract in contracts:
            toml.append("[[tool.importlinter.contracts]]")
            toml += [f"{key} = {json.dumps(value)}" for key, value in contract.items()]
        (tree / "pyproject.toml").write_text("\n".join(toml) + "\n")
        lint_imports = Path(sys.executable).parent / "lint-imports"
        run = subprocess.run([str(lint_imports), "pyproject.toml", "--no-cache"], cwd=tree, capture_output=True,
                             text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(tree)})
        return run.stdout + run.stderr

    assert "2 kept, 0 broken" in lint({})
    broken = lint({"tui/app": "from assistant import documents\n",
                   "brand_new": "from assistant.cli import assist\nimport click\n"})
    assert "0 kept, 2 broken" in broken
    assert "assistant.tui.app -> assistant.documents" in broken
    assert "assistant.brand_new -> assistant.cli.assist" in broken and "assistant.brand_new -> click" in broken


def cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_modules():
    # A cycle through an import under `if TYPE_CHECKING:` is still two modules that need
    # each other (import-linter's contracts leave those imports out).
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=False, cache_dir=None)
    assert cycles(graph) == KNOWN_CYCLES


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from cyclic import b  # a lazy import counts\n")
    (package / "b.py").write_text("from cyclic import c\n")
    (package / "c.py").write_text("import cyclic.a\n")
    (package / "d.py").write_text("import cyclic.a\n")
    (package / "e.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cyclic import f\n")
    (package / "f.py").write_text("from cyclic import e\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclic", exclude_type_checking_imports=False, cache_dir=None)
    assert cycles(graph) == [["cyclic.a", "cyclic.b", "cyclic.c"], ["cyclic.e", "cyclic.f"]]


def module_lengths() -> dict[str, int]:
    return {path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def test_no_module_over_450_lines():
    lengths = module_lengths()
    assert len(lengths) > 50 and "models/xgen.py" in lengths
    over = {name: lines for name, lines in lengths.items() if lines > MAX_LINES}
    assert set(over) == OVER_THE_LIMIT, f"modules over {MAX_LINES} lines: {over}"
