"""Whether llama.cpp repacks the weights (issue 13): the policy, that the switch reaches
llama.cpp, that both kernel paths compute the same model, and which jobs ask for which.

For jobs that read far more than they write (summarize, ask) on an AVX512-VNNI build,
xgen leaves K-quant weights in their GGUF layout, so that llama.cpp's tiled K-quant
kernel reads the prompts (bench/RESULTS.md); chat, and every job on other builds, keep
llama.cpp's default, repacked weights, whose one-row kernel generates faster.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from models.errors import XGenError
from models.llama_cpp_utils import (REPACK_ENV, llama_logits, load_llama, repack_weights, system_info,
                                    weight_layout_line, weight_repacking)

AVX512_VNNI = {"CPU": {"AVX2": "1", "AVX512": "1", "AVX512_VNNI": "1", "REPACK": "1"}}
AVX2_ONLY = {"CPU": {"AVX2": "1", "FMA": "1", "REPACK": "1"}}


@pytest.mark.parametrize("info, version, repack", [
    (AVX512_VNNI, "0.3.36", False),   # the tiled kernel with its VNNI microkernel reads prompts faster
    (AVX512_VNNI, "0.3.40", False),
    (AVX512_VNNI, "0.4.0", False),
    (AVX512_VNNI, "0.3.35", True),    # before the tiled kernel: repacked weights are the fast path
    (AVX2_ONLY, "0.3.36", True),      # the tiled AVX2 kernel is slower than the repacked one
    ({"Metal": {"EMBED_LIBRARY": "1"}, "CPU": {"NEON": "1", "ARM_FMA": "1"}}, "0.3.36", True),
])
def test_policy_follows_the_build(monkeypatch, info, version, repack):
    monkeypatch.delenv(REPACK_ENV, raising=False)
    assert repack_weights(info, version, prompt_heavy=True) is repack
    assert repack_weights(info, version) is True  # chat: the repacked one-row kernel generates faster


@pytest.mark.parametrize("setting, repack", [("on", True), ("ON", True), ("off", False), (" off ", False),
                                             ("auto", False), ("", False)])
def test_setting_overrides_the_policy(monkeypatch, setting, repack):
    assert repack_weights(AVX512_VNNI, "0.3.36", setting, prompt_heavy=True) is repack
    monkeypatch.setenv(REPACK_ENV, setting)
    assert repack_weights(AVX512_VNNI, "0.3.36", prompt_heavy=True) is repack
    if setting.strip().lower() in ("on", "off"):  # for every job and build
        assert repack_weights(AVX2_ONLY, "0.3.36", setting, prompt_heavy=True) is repack
        assert repack_weights(AVX512_VNNI, "0.3.36", setting) is repack


def test_bad_setting_is_one_clear_line(monkeypatch):
    monkeypatch.setenv(REPACK_ENV, "fast")
    with pytest.raises(XGenError, match=f"^{REPACK_ENV} must be auto, on or off, not 'fast'$"):
        repack_weights(AVX2_ONLY, "0.3.36")
    assert REPACK_ENV in weight_layout_line()  # `xgen models` says so instead of failing


def test_layout_line_names_the_choice(monkeypatch):
    monkeypatch.setenv(REPACK_ENV, "on")
    assert weight_layout_line().startswith("CPU weights: repacked at load for every job")
    monkeypatch.setenv(REPACK_ENV, "off")
    assert weight_layout_line().startswith("CPU weights: kept in the GGUF layout")
    monkeypatch.delenv(REPACK_ENV)
    line = weight_layout_line()
    if repack_weights(prompt_heavy=True):
        assert line.startswith("CPU weights: repacked at load for every job")
    else:
        assert line.startswith("CPU weights: kept in the GGUF layout (tiled K-quant kernel, AVX512-VNNI) "
                               "for summarize and ask; repacked at load for chat")


@pytest.mark.parametrize("command", [["summarize", "{doc}"], ["ask", "{doc}", "-q", "What is it?"]])
def test_reading_jobs_ask_for_the_prompt_layout(tmp_path, monkeypatch, command):
    """summarize and ask open their model as prompt-heavy jobs; the app (chat) does not."""
    from click.testing import CliRunner

    import assistant.modelref as modelref
    from assistant.cli import main

    doc = tmp_path / "notes.txt"
    doc.write_text("The harbour lights were lit at dusk.\n")
    seen = {}

    def fake_open_model(*args, **kwargs):
        seen.update(kwargs)
        raise XGenError("stop here")

    monkeypatch.setattr(modelref, "open_model", fake_open_model)
    result = CliRunner().invoke(main, [part.format(doc=doc) for part in command])
    assert result.output.strip().endswith("stop here") and result.exit_code != 0
    assert seen.get("prompt_heavy") is True


def test_open_model_passes_the_layout(converted, monkeypatch):
    from assistant.modelref import open_model

    monkeypatch.delenv(REPACK_ENV, raising=False)
    for prompt_heavy in (False, True):
        model = open_model(str(converted("q4_k_m")), "llama", 128, prompt_heavy=prompt_heavy)
        try:
            assert model.engine.weights_repacked is repack_weights(prompt_heavy=prompt_heavy)
        finally:
            model.engine.close()


class LoadLog:
    """llama.cpp's log lines while a model loads (its own default callback restored after)."""

    def __enter__(self):
        import llama_cpp

        self.lines: list[str] = []

        def capture(level, text, user_data):
            self.lines.append(text.decode("utf-8", errors="replace"))

        self._callback = llama_cpp.llama_log_callback(capture)
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc):
        import llama_cpp
        from llama_cpp import _logger

        from assistant.engines import llama as engine_module

        restore = engine_module._log_callback or _logger.llama_log_callback
        llama_cpp.llama_log_set(restore, ctypes.c_void_p(0))

    @property
    def text(self) -> str:
        return "".join(self.lines)


def test_switch_reaches_llama_cpp(converted):
    """With repacking on, llama.cpp puts the Q4_K weights in its CPU_REPACK buffer; with
    it off, it does not: the setting is not only recorded, llama.cpp obeys it."""
    path = converted("q4_k_m")
    with LoadLog() as on, weight_repacking(True):
        load_llama(path, n_ctx=128).close()
    if "CPU_REPACK" not in on.text:
        pytest.skip("this llama.cpp build has no repacked layout for Q4_K on this CPU")
    with LoadLog() as off, weight_repacking(False):
        load_llama(path, n_ctx=128).close()
    assert "model buffer size" in off.text  # the log was captured
    assert "CPU_REPACK" not in off.text


def test_switch_is_scoped():
    import llama_cpp.llama_cpp as low

    original = low.llama_model_default_params
    with weight_repacking(False):
        assert low.llama_model_default_params().use_extra_bufts is False
    assert low.llama_model_default_params is original
    assert low.llama_model_default_params().use_extra_bufts is True  # llama.cpp's default
    with pytest.raises(RuntimeError), weight_repacking(False):
        raise RuntimeError("load failed")
    assert low.llama_model_default_params is original


def test_both_layouts_compute_the_same_model(converted, torch_reference):
    """A 64-token prompt (batches of >= 8 rows take the tiled kernel when the weights are
    not repacked): both layouts are as close to the fp32 torch model as the q4_k_m bound
    allows, and far closer to each other than to it."""
    import torch

    from converter.quant import LOGITS_NMSE_BOUNDS
    from converter.verify import nmse

    path = converted("q4_k_m")
    ids = [int(i) for i in np.random.default_rng(3).integers(256, 50000, size=64)]
    logits = {}
    for repack in (True, False):
        with weight_repacking(repack):
            llm = load_llama(path, n_ctx=128, logits_all=True)
        try:
            logits[repack] = llama_logits(llm, ids)
        finally:
            llm.close()
    with torch.no_grad():
        reference = torch_reference(torch.tensor([ids]))[0].float().numpy()
    errors = {repack: nmse(values, reference) for repack, values in logits.items()}
    for repack, error in errors.items():
        assert error < LOGITS_NMSE_BOUNDS["q4_k_m"], (repack, error)
    # the two kernels differ by rounding (float accumulation order), not by the model:
    # measured 2.2e-4 between them against 2e-2 for each one's quantization error
    between = nmse(logits[False], logits[True])
    assert between < 0.05 * min(errors.values()), (between, errors)
    assert (logits[True].argmax(-1) == logits[False].argmax(-1)).mean() > 0.95


def test_engine_records_the_layout(converted, monkeypatch):
    from assistant.engines.llama import LlamaEngine

    monkeypatch.setenv(REPACK_ENV, "off")
    engine = LlamaEngine(converted("q4_k_m"), n_ctx=128)
    try:
        assert engine.weights_repacked is False
    finally:
        engine.close()
    engine = LlamaEngine(converted("q4_k_m"), n_ctx=128, repack=True)
    try:
        assert engine.weights_repacked is True
    finally:
        engine.close()
