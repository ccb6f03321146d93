"""The autouse network guard really catches connections (so the rest of the suite proves offline)."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import NetworkAccess


def test_guard_blocks_outside_addresses(no_network):
    with pytest.raises(NetworkAccess):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)
    assert no_network  # recorded
    no_network.clear()  # this test caused it on purpose


def test_guard_allows_loopback(no_network):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=1)
    client.close()
    server.close()
    assert no_network == []


def test_tiktoken_without_cache_does_not_download(monkeypatch, tmp_path):
    """Run-time tokenizer loading with allow_download=False never touches the network."""
    from models.errors import XGenError
    from models.tokenizer import _build_encoding, load_xgen_encoding

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    _build_encoding.cache_clear()
    try:
        with pytest.raises(XGenError, match="not available offline|TIKTOKEN_CACHE_DIR"):
            load_xgen_encoding(allow_download=False)
    finally:
        _build_encoding.cache_clear()


def test_converting_a_local_folder_never_fetches_the_vocabulary(monkeypatch, tmp_path, tiny_checkpoint, no_network):
    """With no tiktoken cache, `xgen convert ./folder` silently tried a download (a DNS query
    for tiktoken's host). It now refuses in one line, with the command that fetches them."""
    from click.testing import CliRunner

    from assistant.cli import main
    from converter.convert import xgen_vocab
    from models.tokenizer import _build_encoding

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    _build_encoding.cache_clear()
    xgen_vocab.cache_clear()
    try:
        result = CliRunner().invoke(main, ["convert", str(tiny_checkpoint), "-o", str(tmp_path / "x.gguf")])
    finally:
        _build_encoding.cache_clear()
        xgen_vocab.cache_clear()
    assert result.exit_code == 1 and no_network == [], (result.output, no_network)
    line = [ln for ln in result.output.replace("\r", "\n").splitlines() if ln.strip()][-1]
    assert line.startswith("error: The GPT-2 vocabulary (tiktoken r50k_base) is not available offline")
    assert "tiktoken.get_encoding('r50k_base')" in line
    assert not (tmp_path / "x.gguf").exists()
