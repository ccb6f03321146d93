"""Every benchmark's --quick mode runs offline and meets its (quick) target: exit code 0.

Each benchmark runs as `python -m bench.<name>` from the repository root, as bench/RESULTS.md
shows, in a subprocess whose Python processes (and their children) cannot open a
connection off this machine: a `sitecustomize.py` on PYTHONPATH replaces socket
connect/getaddrinfo with a refusal, so a quick mode that needed the network would fail
here. The quick modes use small synthetic models built once into bench/.cache; the
conversion peer (llama.cpp's sources) is full-mode only.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = [
    "bench.bench_convert",
    "bench.bench_inference",
    "bench.bench_memory",
    "bench.bench_gpu",
    "bench.bench_followup",
    "bench.bench_verify",
    "bench.bench_pull",  # its Hub stand-in listens on 127.0.0.1, which the guard allows
    "bench.bench_build",
    "bench.bench_library",
    "bench.bench_ask",
]
# bench.bench_summarize is full-mode only: its target is defined at the 8K context, where even
# its smallest case evaluates ~8,000 prompt tokens (minutes on two shared cores); the
# map-reduce cost at 8K is checked in tests/test_summarize.py with the fake engine.

OFFLINE_GUARD = '''
import socket

def _loopback(address):
    if isinstance(address, (str, bytes)):
        return True
    host = str(address[0])
    return host in ("localhost", "::1") or host.startswith("127.")

_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

def _guard(real):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
            raise OSError(f"benchmark smoke test: network access to {address!r} refused")
        return real(self, address)
    return connect

def _getaddrinfo_guard(host, *args, **kwargs):
    if host not in (None, "localhost", "::1") and not str(host).startswith("127."):
        raise OSError(f"benchmark smoke test: DNS lookup of {host!r} refused")
    return _getaddrinfo(host, *args, **kwargs)

socket.socket.connect = _guard(_connect)
socket.socket.connect_ex = _guard(_connect_ex)
socket.getaddrinfo = _getaddrinfo_guard
'''


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory):
    guard = tmp_path_factory.mktemp("offline-guard")
    (guard / "sitecustomize.py").write_text(OFFLINE_GUARD)
    env = dict(os.environ)
    # Only the guard: `python -m` from the repository root finds bench/ and the packages itself.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(guard), env.get("PYTHONPATH", "")) if p)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_bench_quick(benchmark, offline_env):
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", benchmark, "--quick"], cwd=REPO, env=offline_env,
                          capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{benchmark} --quick exited {proc.returncode} after {seconds:.0f} s:\n{output[-4000:]}"
    assert "FAILED" not in proc.stdout


def test_every_benchmark_is_listed_or_said_to_be_full_mode_only():
    on_disk = {f"bench.{path.stem}" for path in (REPO / "bench").glob("bench_*.py")}
    assert on_disk == set(BENCHMARKS) | {"bench.bench_summarize"}


def imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def edits_sys_path(source: str) -> bool:
    return any(isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
               and node.value.id == "sys" for node in ast.walk(ast.parse(source)))


def test_benchmarks_import_no_test_module_and_leave_sys_path_alone():
    offenders = {}
    for path in sorted((REPO / "bench").glob("*.py")):
        source = path.read_text()
        tests = sorted(m for m in imported_modules(source) if m == "tests" or m.startswith("tests."))
        if tests or edits_sys_path(source):
            offenders[path.name] = tests + (["sys.path"] if edits_sys_path(source) else [])
    assert offenders == {}


def test_the_bench_import_check_sees_test_imports_and_path_edits():
    source = "import sys\nfrom tests.hub import Hub\nimport tests.corpus\nsys.path.insert(0, '..')\n"
    assert imported_modules(source) == {"sys", "tests.hub", "tests.corpus"}
    assert edits_sys_path(source)
    assert not edits_sys_path("import sys\nprint(sys.argv)\n")
