"""Every benchmark's --quick mode runs offline and meets its (quick) target: exit code 0.

Each script runs in a subprocess whose Python processes (and their children) cannot
open a connection off this machine: a `sitecustomize.py` on PYTHONPATH replaces
socket connect/getaddrinfo with a refusal, so a quick mode that needed the network
would fail here. The quick modes use small synthetic models built once into
bench/.cache; the conversion peer (llama.cpp's sources) is full-mode only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = [
    "bench/bench_convert.py",
    "bench/bench_inference.py",
    "bench/bench_memory.py",
    "bench/bench_gpu.py",
    "bench/bench_followup.py",
    "bench/bench_verify.py",
    "bench/bench_pull.py",  # its Hub stand-in listens on 127.0.0.1, which the guard allows
    "bench/bench_build.py",
    "-m bench.bench_library",  # a module: run as a file, bench/models.py would hide the models package
]
# bench_summarize.py is full-mode only: its target is defined at the 8K context, where even
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
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(guard), str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_quick(script, offline_env):
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *script.split(), "--quick"], cwd=REPO, env=offline_env,
                          capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script} --quick exited {proc.returncode} after {seconds:.0f} s:\n{output[-4000:]}"
    assert "FAILED" not in proc.stdout
