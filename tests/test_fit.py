"""Fits before it loads: the memory estimate, the choices it leads to, and the cores counted."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.fit import GiB, LlamaShape, check_torch_fits, llama_need, plan_gguf, plan_llama
from models.errors import XGenError
from models.hardware import available_memory, cgroup_cpu_limit, usable_cores

# XGen-7B as a Q4_K_M GGUF: 32 layers, 32 kv heads of 128, 4.07 GB of weights.
SEVEN_B = LlamaShape(weights=4_190_000_000, n_layers=32, kv_width=4096, n_head=32, context_length=8192)


def test_the_estimate_matches_the_measured_7b_peak():
    # bench/RESULTS.md, 7B Q4_K_M at 8K: RssAnon 7.44 GiB + ~0.9 GiB of mapped weights still read
    # with the f16 cache; the q8_0 cache ran inside an 8 GB (7.45 GiB) memory limit.
    assert abs(llama_need(SEVEN_B, 8192, "f16") / GiB - 8.3) < 0.2
    assert 5.22 < llama_need(SEVEN_B, 8192, "q8_0") / GiB < 7.45
    assert llama_need(SEVEN_B, 8192, "f16") - llama_need(SEVEN_B, 8192, "q8_0") == pytest.approx(
        2 * 32 * 8192 * 4096 * (2 - 34 / 32), rel=1e-6)


def test_enough_memory_changes_nothing():
    assert plan_llama(SEVEN_B, 8192, None, ctx_asked=False, available=16 * GiB).kv_type == "f16"
    assert plan_llama(SEVEN_B, 8192, None, ctx_asked=False, available=None).note == ""  # unknown: no guess


def test_a_laptop_gets_the_q8_0_cache_then_a_shorter_context_with_a_note():
    plan = plan_llama(SEVEN_B, 8192, None, ctx_asked=False, available=7 * GiB)
    assert (plan.n_ctx, plan.kv_type) == (8192, "q8_0") and "q8_0 KV cache" in plan.note
    plan = plan_llama(SEVEN_B, 8192, None, ctx_asked=False, available=5.5 * GiB)
    assert plan.kv_type == "q8_0" and 2048 <= plan.n_ctx < 8192 and plan.n_ctx % 256 == 0
    assert llama_need(SEVEN_B, plan.n_ctx, "q8_0") <= 5.5 * GiB < llama_need(SEVEN_B, plan.n_ctx + 256, "q8_0")
    assert f"using {plan.n_ctx:,} tokens" in plan.note


def test_what_was_asked_for_is_kept_or_refused_with_what_would_fit():
    plan = plan_llama(SEVEN_B, 8192, "f16", ctx_asked=False, available=7 * GiB)
    assert plan.kv_type == "f16" and plan.n_ctx < 8192  # the cache type asked for is kept
    with pytest.raises(XGenError, match=r"needs about 6\.\d GiB at 8,192 tokens.*try --ctx \d+"):
        plan_llama(SEVEN_B, 8192, "q8_0", ctx_asked=True, available=5.5 * GiB)
    with pytest.raises(XGenError, match="close other programs"):
        plan_llama(SEVEN_B, 8192, None, ctx_asked=False, available=4 * GiB)


def test_open_model_switches_the_tiny_model_to_a_q8_0_cache(converted, monkeypatch):
    from assistant import fit
    from assistant.modelref import open_model

    path = converted("q8_0")
    need_f16 = plan_gguf(path, 0, None, available=10**12)
    assert need_f16.kv_type == "f16"
    shape_need = {kv: None for kv in ("f16", "q8_0")}
    from models.gguf_file import read_gguf

    info = read_gguf(path)
    shape = LlamaShape(info.nbytes, info.n_layers, info.n_head_kv * info.n_embd // info.n_head, info.n_head,
                       info.context_length)
    for kv in shape_need:
        shape_need[kv] = llama_need(shape, info.context_length, kv)
    monkeypatch.setattr(fit, "available_memory", lambda: shape_need["q8_0"] + 1)
    model = open_model(str(path))
    try:
        assert model.engine.kv_type == "q8_0" and "q8_0 KV cache" in model.note
    finally:
        model.engine.close()


def test_an_fp32_folder_that_cannot_fit_is_refused_with_convert_suggested(tiny_checkpoint):
    with pytest.raises(XGenError, match=r"fp32 on the CPU needs about .* xgen convert"):
        check_torch_fits(tiny_checkpoint, "cpu", available=1024)
    check_torch_fits(tiny_checkpoint, "cpu", available=10 * GiB)


def test_cores_follow_affinity_smt_and_the_cgroup_quota(tmp_path, monkeypatch):
    import os

    sys_cpu = tmp_path / "cpu"
    for cpu, siblings in {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"}.items():
        (sys_cpu / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (sys_cpu / f"cpu{cpu}" / "topology" / "thread_siblings_list").write_text(siblings + "\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert usable_cores(cgroup, sys_cpu) == 2  # four logical CPUs, two physical cores
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2})
    assert usable_cores(cgroup, sys_cpu) == 1  # both siblings of one core
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    (cgroup / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(cgroup) == 1.5 and usable_cores(cgroup, sys_cpu) == 1


def test_available_memory_takes_the_cgroup_limit(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert available_memory(cgroup, meminfo) == 20000000 * 1024
    (cgroup / "memory.max").write_text(str(8 * GiB))
    (cgroup / "memory.current").write_text(str(3 * GiB))
    (cgroup / "memory.stat").write_text(f"anon 100\ninactive_file {GiB}\n")
    assert available_memory(cgroup, meminfo) == 6 * GiB  # 8 - (3 - 1 reclaimable)


def searched_context(shape: LlamaShape, n_ctx: int, kv: str, available: float) -> int | None:
    """The reference: every shorter context in steps of 256, longest first, the first that fits."""
    return next((c for c in range(n_ctx - 256, 2047, -256) if llama_need(shape, c, kv) <= available), None)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(n_layers=st.integers(1, 80), kv_heads=st.integers(1, 64), n_ctx=st.integers(2048, 40_000),
       weights=st.integers(10**6, 40 * 10**9), free=st.floats(0.5, 64), kv=st.sampled_from(["f16", "q8_0"]))
def test_the_shorter_context_is_solved_as_the_search_would_find_it(n_layers, kv_heads, n_ctx, weights, free, kv):
    shape = LlamaShape(weights=weights, n_layers=n_layers, kv_width=kv_heads * 128, n_head=kv_heads,
                       context_length=n_ctx)
    available = free * GiB
    fits_as_asked = llama_need(shape, n_ctx, kv) <= available
    expected = n_ctx if fits_as_asked else searched_context(shape, n_ctx, kv, available)
    if expected is None:
        with pytest.raises(XGenError, match="close other programs"):
            plan_llama(shape, n_ctx, kv, ctx_asked=False, available=available)
    else:
        assert plan_llama(shape, n_ctx, kv, ctx_asked=False, available=available).n_ctx == expected


def test_a_context_of_a_trillion_tokens_is_planned_at_once():
    """A context of 10^12 tokens once meant a search through 4 billion shorter ones."""
    done = []
    worker = threading.Thread(target=lambda: done.append(
        plan_llama(SEVEN_B, 10**12, None, ctx_asked=False, available=5.5 * GiB)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert done and done[0].n_ctx == searched_context(SEVEN_B, 8192 + 256, "q8_0", 5.5 * GiB)
