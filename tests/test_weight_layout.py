"""Whether llama.cpp repacks the weights (issue 13): the setting, that the switch
reaches llama.cpp, and that both kernel paths compute the same model.

xgen keeps llama.cpp's default, repacked weights; XGEN_WEIGHT_REPACK=off leaves them in
their GGUF layout, which llama.cpp's tiled K-quant kernel (AVX512-VNNI) reads prompts
from faster, at a cost in generation speed (bench/RESULTS.md).
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from models.errors import XGenError
from models.llama_cpp_utils import (REPACK_ENV, llama_logits, load_llama, repack_weights, tiled_kquant_kernel,
                                    weight_layout_line, weight_repacking)

AVX512_VNNI = {"CPU": {"AVX2": "1", "AVX512": "1", "AVX512_VNNI": "1", "REPACK": "1"}}
AVX2_ONLY = {"CPU": {"AVX2": "1", "FMA": "1", "REPACK": "1"}}


@pytest.mark.parametrize("info, version, tiled", [
    (AVX512_VNNI, "0.3.36", True),
    (AVX512_VNNI, "0.3.40", True),
    (AVX512_VNNI, "0.4.0", True),
    (AVX512_VNNI, "0.3.35", False),   # before the tiled kernel
    (AVX2_ONLY, "0.3.36", False),     # no VNNI microkernel: its AVX2 one is slower than the repacked kernel
    ({"Metal": {"EMBED_LIBRARY": "1"}, "CPU": {"NEON": "1", "ARM_FMA": "1"}}, "0.3.36", False),
])
def test_tiled_kernel_follows_the_build(info, version, tiled):
    assert tiled_kquant_kernel(info, version) is tiled


@pytest.mark.parametrize("setting, repack", [(None, True), ("on", True), ("ON", True), ("", True),
                                             ("off", False), (" off ", False), ("0", False)])
def test_setting(monkeypatch, setting, repack):
    monkeypatch.delenv(REPACK_ENV, raising=False)
    if setting is not None:
        assert repack_weights(setting) is repack
        monkeypatch.setenv(REPACK_ENV, setting)
    assert repack_weights() is repack  # unset: llama.cpp's repacked weights


def test_bad_setting_is_one_clear_line(monkeypatch):
    monkeypatch.setenv(REPACK_ENV, "fast")
    with pytest.raises(XGenError, match=f"^{REPACK_ENV} must be on or off, not 'fast'$"):
        repack_weights()
    assert weight_layout_line() == f"CPU weights: {REPACK_ENV} must be on or off, not 'fast'"


def test_layout_line_names_the_choice(monkeypatch):
    monkeypatch.setenv(REPACK_ENV, "off")
    assert weight_layout_line().startswith("CPU weights: kept in the GGUF layout")
    monkeypatch.delenv(REPACK_ENV)
    line = weight_layout_line()
    assert line.startswith("CPU weights: repacked at load (llama.cpp's default")
    assert ("tiled AVX512-VNNI kernel" in line) is tiled_kquant_kernel()


def test_bad_setting_stops_a_command_in_one_line(converted, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from assistant.cli import main

    doc = tmp_path / "notes.txt"
    doc.write_text("The harbour lights were lit at dusk.\n")
    monkeypatch.setenv(REPACK_ENV, "fast")
    result = CliRunner().invoke(main, ["summarize", "--model", str(converted("q4_k_m")), str(doc)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {REPACK_ENV} must be on or off, not 'fast'"]


class LoadLog:
    """llama.cpp's log lines while a model loads (the engines' log filter restored after)."""

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

        from assistant.engines.llama import _quiet_logs

        llama_cpp.llama_log_set(_quiet_logs(llama_cpp), ctypes.c_void_p(0))  # the engines' log filter

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
    # Same predictions wherever the prediction is decided: a random model has near-ties
    # (top-2 gaps below the kernels' rounding), where either token may win on either kernel.
    noise = float(np.sqrt(np.mean((logits[True] - logits[False]) ** 2)))
    top2 = np.sort(logits[True], axis=-1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 4 * noise
    assert decided.mean() > 0.5, (decided.mean(), noise)
    assert (logits[True].argmax(-1) == logits[False].argmax(-1))[decided].all()


def test_engine_loads_with_the_setting(converted, monkeypatch):
    """The engine passes XGEN_WEIGHT_REPACK to llama.cpp (default: repacked)."""
    import llama_cpp

    from assistant.engines.llama import LlamaEngine, _quiet_logs

    _quiet_logs(llama_cpp)  # the engine installs its log filter once; capture after it
    logs = {}
    for setting in ("off", None):
        if setting:
            monkeypatch.setenv(REPACK_ENV, setting)
        else:
            monkeypatch.delenv(REPACK_ENV, raising=False)
        with LoadLog() as log:
            engine = LlamaEngine(converted("q4_k_m"), n_ctx=128)
        engine.close()
        assert engine.weights_repacked is (setting is None)
        assert "model buffer size" in log.text
        logs[setting] = log.text
    assert "CPU_REPACK" not in logs["off"]
    if "CPU_REPACK" not in logs[None]:
        pytest.skip("this llama.cpp build has no repacked layout for Q4_K on this CPU")
