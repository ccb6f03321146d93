"""Stopping generation: stop strings in every local engine, and a stop request that reaches
into llama.cpp's native evaluation of a long prompt batch."""

from __future__ import annotations

import threading
from dataclasses import replace
import time

import pytest

from assistant.engines import open_engine
from assistant.engines.base import SamplingSettings
from assistant.engines.stops import StopFilter, held_back


def test_held_back_is_the_longest_possible_start_of_a_stop_string():
    assert held_back("Done.\n###", ["### Human:"]) == 3
    assert held_back("Done.\n### Hu", ["### Human:", "### Assistant:"]) == 6
    assert held_back("Done.", ["### Human:"]) == 0
    assert held_back("a #", ["### Human:"]) == 1


def test_the_filter_never_shows_a_stop_string_even_split_across_pieces():
    shown: list[str] = []
    f = StopFilter(["### Human:"], shown.append)
    for piece in ["The answer", " is 4.\n#", "##", " Hum", "an: more", " text"]:
        f.feed(piece)
    assert f.close() == "The answer is 4.\n"
    assert "".join(shown) == "The answer is 4.\n"


def test_text_that_only_looks_like_a_stop_start_is_shown_at_the_end():
    shown: list[str] = []
    f = StopFilter(["### Human:"], shown.append)
    f.feed("Use ## for headings, #")
    assert "".join(shown) == "Use ## for headings, "
    assert f.close() == "Use ## for headings, #" and "".join(shown) == "Use ## for headings, #"


@pytest.mark.parametrize("kind", ["llama", "torch"])
def test_a_stop_string_ends_the_reply_in_every_local_engine(kind, converted, tiny_checkpoint):
    model = converted("f32") if kind == "llama" else tiny_checkpoint
    engine = open_engine(kind, model, n_ctx=256)
    try:
        prompt = engine.tokenize("The quick brown fox jumps over the lazy dog.")
        greedy = SamplingSettings.greedy(max_tokens=40)
        free = engine.generate(prompt, greedy)
        text = free.text
        assert len(text) > 20, text
        marker = text[len(text) // 2: len(text) // 2 + 4]  # a piece of what the model writes anyway
        assert marker.strip()
        shown: list[str] = []
        cut = engine.generate(prompt, replace(greedy, stop_strings=(marker,)),
                              on_text=shown.append)
        expected = text[: text.index(marker)]
        assert cut.text == expected and "".join(shown) == expected
        assert cut.stats.finish == "eos"
        assert engine.detokenize(cut.token_ids) == expected[: len(engine.detokenize(cut.token_ids))]
        assert len(cut.token_ids) < len(free.token_ids)
    finally:
        engine.close()


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory):
    """An XGen-shaped model big enough that one 4,096-token batch takes seconds."""
    from converter.convert import convert
    from models.config import TRANSFORMER_CONFIGS
    from models.synthetic import write_checkpoint

    folder = tmp_path_factory.mktemp("small")
    checkpoint = write_checkpoint(folder / "hf", TRANSFORMER_CONFIGS["small"], n_shards=1, seed=1)
    return convert(checkpoint, folder / "small-q8_0.gguf", "q8_0").path


def test_a_stop_request_aborts_llama_decode_mid_batch(small_gguf, capfd):
    engine = open_engine("llama", small_gguf, n_ctx=4608, n_batch=4096, n_threads=2)
    try:
        prompt = [(i * 7919) % 50000 + 100 for i in range(4000)]  # one batch, evaluated in one decode call
        greedy = SamplingSettings.greedy(max_tokens=4)
        stop = threading.Event()
        timer = threading.Timer(0.3, stop.set)
        started = time.perf_counter()
        timer.start()
        done = engine.generate(prompt, greedy, stop=stop)
        stopped_after = time.perf_counter() - started
        timer.cancel()
        assert done.stats.finish == "stopped" and done.token_ids == []
        assert capfd.readouterr().err == ""  # llama.cpp's expected abort messages are not shown
        assert engine.cached_ids == []  # the aborted batch left nothing behind
        # A full evaluation takes much longer than the stop did, and the engine is intact.
        started = time.perf_counter()
        full = engine.generate(prompt[:1000], greedy)
        thousand = time.perf_counter() - started
        assert stopped_after < 0.3 + max(1.0, 2 * thousand), (stopped_after, thousand)
        fresh = open_engine("llama", small_gguf, n_ctx=4608, n_batch=4096, n_threads=2)
        try:
            assert fresh.generate(prompt[:1000], greedy).token_ids == full.token_ids
        finally:
            fresh.close()
    finally:
        engine.close()


def test_one_engines_abort_does_not_silence_another_engines_errors(capfd):
    """The abort flag belongs to an engine: while one engine unwinds a stopped batch on
    its thread, an engine failing on another thread still has its error shown."""
    from types import SimpleNamespace

    from assistant.engines.llama import GGML_LOG_CONT, GGML_LOG_ERROR, _decoding, _ErrorsOnly

    log = _ErrorsOnly()  # llama.cpp's log callback
    aborting = threading.Event()
    done = threading.Event()

    def stopped_engine() -> None:  # llama_decode unwinding on a stop request
        _decoding.set(SimpleNamespace(aborting=True))
        log(GGML_LOG_ERROR, b"decode: failed to compute (aborted)\n", None)
        aborting.set()
        done.wait(10)
        log(GGML_LOG_ERROR, b"decode: still unwinding\n", None)

    thread = threading.Thread(target=stopped_engine)
    thread.start()
    assert aborting.wait(10)
    failing = _decoding.set(SimpleNamespace(aborting=False))  # this thread's engine really fails
    log(GGML_LOG_ERROR, b"llama_decode: out of memory", None)
    log(GGML_LOG_CONT, b" (KV cache)\n", None)
    _decoding.reset(failing)
    done.set()
    thread.join(10)
    assert capfd.readouterr().err == "llama_decode: out of memory (KV cache)\n"


def test_too_old_bindings_are_refused_with_the_version_needed(converted, monkeypatch):
    import llama_cpp

    from assistant.engines import llama as engine_module
    from models.errors import XGenError

    monkeypatch.setattr(llama_cpp, "__version__", "0.3.16")
    with pytest.raises(XGenError, match=r"llama-cpp-python 0\.3\.16 is too old.*needs 0\.3\.35 or newer"):
        open_engine("llama", converted("q8_0"))
    monkeypatch.undo()
    monkeypatch.delattr(llama_cpp, "llama_set_abort_callback")
    with pytest.raises(XGenError, match="lacks llama_set_abort_callback"):
        engine_module._check_bindings(llama_cpp)


def test_llama_cpp_threads_wait_passively_unless_the_user_said_otherwise():
    import subprocess
    import sys

    probe = ("import os; from models.llama_cpp_utils import import_llama_cpp; import_llama_cpp(); "
             "print(os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"


def test_importing_the_packages_leaves_the_environment_alone():
    """Only loading llama.cpp sets OMP_WAIT_POLICY (above); importing xgen's modules, the
    engines included, changes nothing in os.environ."""
    import subprocess
    import sys

    probe = ("import os, pkgutil, importlib; before = dict(os.environ)\n"
             "import assistant, converter, models\n"
             "for package in (assistant, converter, models):\n"
             "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
             "        if not info.name.endswith('__main__'):  # `python -m` entry points run on import\n"
             "            importlib.import_module(info.name)\n"
             "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
             "print(changed)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
