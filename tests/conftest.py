"""Shared fixtures: an offline tiktoken cache and a tiny XGen-shaped checkpoint."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from models.llama_cpp_utils import passive_openmp_threads

# Tests import llama_cpp directly too, not only through the product's import_llama_cpp.
passive_openmp_threads()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# tiktoken names cache files by the sha1 of their download address (see ../shared/XGEN.md).
R50K_CACHE_NAME = "0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4"


def pytest_configure(config):
    """Seed tiktoken's cache so the GPT-2 ranks load with no network."""
    cache = Path(config.rootpath) / ".pytest_cache" / "tiktoken"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / R50K_CACHE_NAME
    if not target.exists():
        source = SHARED_DATA / "r50k_base.tiktoken"
        if not source.exists():
            raise pytest.UsageError(f"{source} is missing: the tests need ../shared beside the repo")
        shutil.copyfile(source, target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)


@pytest.fixture(autouse=True, scope="session")
def xgen_home(tmp_path_factory):
    """Keep every test's models, caches and sessions out of the user's data directory."""
    home = tmp_path_factory.mktemp("xgen-home")
    old = os.environ.get("XGEN_HOME")
    os.environ["XGEN_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("XGEN_HOME", None)
    else:
        os.environ["XGEN_HOME"] = old


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty data directory of this test's own (and no XGEN_MODEL default)."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("XGEN_HOME", str(folder))
    monkeypatch.delenv("XGEN_MODEL", raising=False)
    return folder


@pytest.fixture(scope="session")
def tiny_args():
    from models.config import TRANSFORMER_CONFIGS

    return TRANSFORMER_CONFIGS["tiny"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_args) -> Path:
    """A tiny random XGen-shaped checkpoint in the published layout (2 .bin shards + index)."""
    from models.synthetic import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("tiny-hf"), tiny_args, n_shards=2, seed=0)


@pytest.fixture(scope="session")
def converted(tmp_path_factory, tiny_checkpoint):
    """converted(type) -> path of the tiny checkpoint converted to that GGUF type (once per session)."""
    from converter.convert import convert

    folder = tmp_path_factory.mktemp("gguf")
    cache: dict[str, Path] = {}

    def get(file_type: str) -> Path:
        if file_type not in cache:
            cache[file_type] = convert(tiny_checkpoint, folder / f"tiny-{file_type}.gguf", file_type).path
        return cache[file_type]

    return get


@pytest.fixture(scope="session")
def torch_reference(tiny_checkpoint, tiny_args):
    """The pure-PyTorch model on the tiny checkpoint's weights (fp32, CPU)."""
    from models.checkpoint import CheckpointReader, find_checkpoint
    from models.hf_weights import load_hf_weights
    from models.xgen import build_model

    model = build_model(tiny_args)
    load_hf_weights(model, CheckpointReader(find_checkpoint(tiny_checkpoint)))
    return model.eval()


class NetworkAccess(AssertionError):
    """Raised when code under test tries to reach a non-loopback address."""


def _is_loopback(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    return host in ("localhost", "::1") or str(host).startswith("127.")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test fails if run-time code opens a connection off this machine."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    attempts: list = []

    def guarded(connect):
        def wrapper(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
                attempts.append(address)
                raise NetworkAccess(f"network access to {address!r} during a test")
            return connect(self, address)

        return wrapper

    monkeypatch.setattr(socket.socket, "connect", guarded(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo(socket.getaddrinfo, attempts))
    yield attempts
    assert not attempts, f"network access attempted: {attempts}"


def _guarded_getaddrinfo(real, attempts):
    def getaddrinfo(host, *args, **kwargs):
        if host not in (None, "localhost", "::1") and not str(host).startswith("127."):
            attempts.append(host)
            raise NetworkAccess(f"DNS lookup of {host!r} during a test")
        return real(host, *args, **kwargs)

    return getaddrinfo


@pytest.fixture
def store(home):
    """A sessions database in this test's own data directory (the app's tests use it)."""
    from assistant.store import Store

    with Store(home / "sessions.db") as store:
        yield store
