"""models/xgen.py, models/inference.py and models/hf_weights.py against an independent
reference: transformers' LlamaForCausalLM.

Small random models (fixed seeds) in fp32 with eager attention. The weights are
rescaled so that activations and logits are O(1) and the norm weights are not all ones
(a swapped input/post-attention norm mapping would otherwise go unnoticed).
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from models.config import ModelArgs
from models.errors import XGenError
from models.hf_weights import HF_TO_XGEN, hf_to_xgen_name, load_hf_weights
from models.inference import decode_one_token, greedy_generate, pick_device_dtype, prefill
from models.xgen import KVCache, Transformer, build_model, precompute_rope

transformers = pytest.importorskip("transformers")

SMALL = ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=4, intermediate_size=128,
                  vocab_size=512, max_seq_len=64, bos_token_id=1, eos_token_id=2)
GQA = replace(SMALL, n_kv_heads=2)
CASES = {"mha": SMALL, "gqa": GQA}

# Relative to the largest |logit|: fp32 against fp32 (measured ~1e-7 .. 1e-6).
FP32_RTOL = 1e-4
# bf16 model against the fp32 one, relative to the largest |logit|; measured about
# 0.9-1.5 % max, ~0.9 % mean on these models (bf16 keeps 8 mantissa bits); bound 4 %.
BF16_RTOL = 4e-2


def make_hf(args: ModelArgs, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(**args.to_hf_config())
    config._attn_implementation = "eager"
    model = transformers.LlamaForCausalLM(config).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))  # in [0.5, 1.5)
            elif name == "model.embed_tokens.weight":
                p.copy_(torch.randn(p.shape, generator=gen))
            else:  # [out, in]: unit-variance outputs; logits a bit wider
                scale = (2.0 if name == "lm_head.weight" else 1.0) / math.sqrt(p.shape[1])
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def ours_from(hf, args: ModelArgs, dtype=torch.float32) -> Transformer:
    model = build_model(args, "cpu", dtype)
    load_hf_weights(model, hf.state_dict().items())
    return model


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.float() - ref.float()).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module", params=list(CASES))
def pair(request):
    args = CASES[request.param]
    hf = make_hf(args)
    return args, hf, ours_from(hf, args)


# -- against transformers ------------------------------------------------------------


def test_logits_match_transformers(pair):
    args, hf, ours = pair
    ids = torch.randint(0, args.vocab_size, (2, 24), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf(ids).logits
        got = ours(ids)
    assert got.shape == (2, 24, args.vocab_size) and got.dtype == torch.float32
    assert ref.std() > 1.0  # logits are not flat, so the comparison means something
    assert rel_err(got, ref) < FP32_RTOL


def test_greedy_generate_matches_transformers(pair):
    args, hf, ours = pair
    prompt = [5, 17, 300, 42, 7]
    hf.generation_config.eos_token_id = None  # run the full length
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20,
                          pad_token_id=0)[0, len(prompt):].tolist()
    assert len(ref) == 20 and len(set(ref)) > 3  # not a degenerate repetition
    assert greedy_generate(ours, prompt, 20) == ref

    # Stop at an EOS: take a token HF first produces at step k as the EOS id.
    k = next(i for i in range(4, 20) if ref[i] not in ref[:i])
    eos = ref[k]
    with torch.no_grad():
        ref_eos = hf.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20,
                              pad_token_id=0, eos_token_id=eos)[0, len(prompt):].tolist()
    assert ref_eos == ref[:k + 1]
    for every in (1, 3, 4, 16, 0):  # batched EOS checks must not change the result
        assert greedy_generate(ours, prompt, 20, eos_id=eos, eos_check_every=every) == ref_eos


# -- KV cache ------------------------------------------------------------------------


def test_kv_cache_matches_full_forward(pair):
    args, _, model = pair
    ids = torch.randint(0, args.vocab_size, (2, 30), generator=torch.Generator().manual_seed(4))
    full = model(ids)  # [2, 30, V], no cache
    model.setup_caches(max_batch_size=2, max_seq_length=40)

    # prefill 7, then a chunk of 5 (chunked prefill), then one token at a time
    logits = prefill(model, ids[:, :7], torch.arange(7))
    assert logits.shape == (2, args.vocab_size)
    assert rel_err(logits, full[:, 6]) < 1e-5
    chunk = model(ids[:, 7:12], torch.arange(7, 12))
    assert rel_err(chunk, full[:, 7:12]) < 1e-5
    input_pos = torch.tensor([12])
    for t in range(12, 30):
        step = decode_one_token(model, ids[:, t:t + 1], input_pos)
        assert rel_err(step, full[:, t]) < 1e-5, f"position {t}"
        input_pos += 1

    # Starting over at position 0 ignores the stale entries left in the cache.
    again = prefill(model, ids[:, 20:26], torch.arange(6))
    assert rel_err(again, model(ids[:, 20:26])[:, -1]) < 1e-5
    model.clear_caches()


def test_cache_buffers_and_no_host_sync():
    """The decode step reads nothing back to the host (CUDA-graph / compile friendly)."""
    model = build_model(SMALL, init=True)
    model.setup_caches(1, 16)
    cache = model.layers[0].attention.kv_cache
    assert isinstance(cache, KVCache)
    assert cache.k_cache.shape == (1, SMALL.n_kv_heads, 16, SMALL.head_dim)
    assert model.causal_mask.shape == (16, 16) and model.causal_mask.dtype == torch.bool

    class RecordOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.add(str(func))
            return func(*args, **(kwargs or {}))

    with RecordOps() as rec:
        prefill(model, torch.tensor([[3, 4, 5]]), torch.arange(3))
        decode_one_token(model, torch.tensor([[6]]), torch.tensor([3]))
    assert "aten.index_copy_.default" in rec.ops  # it did use the cache
    assert not {op for op in rec.ops if "_local_scalar_dense" in op or "nonzero" in op}


def test_forward_with_positions_needs_caches():
    model = build_model(SMALL, init=True)
    with pytest.raises(XGenError, match="setup_caches"):
        model(torch.tensor([[1]]), torch.tensor([0]))
    with pytest.raises(XGenError, match="context"):
        model.setup_caches(1, SMALL.max_seq_len + 1)


# -- bf16 --------------------------------------------------------------------------------


def test_bf16_close_to_fp32(pair):
    args, hf, fp32 = pair
    bf16 = ours_from(hf, args, torch.bfloat16)
    assert bf16.output.weight.dtype == torch.bfloat16
    assert bf16.rope_cos.dtype == torch.float32  # RoPE tables stay fp32
    ids = torch.randint(0, args.vocab_size, (1, 20), generator=torch.Generator().manual_seed(5))
    ref = fp32(ids)  # [1, 20, V]

    bf16.setup_caches(1, 32)
    assert bf16.layers[0].attention.kv_cache.k_cache.dtype == torch.bfloat16
    logits = prefill(bf16, ids[:, :8], torch.arange(8))
    assert logits.dtype == torch.float32
    errors = [rel_err(logits, ref[:, 7])]
    input_pos = torch.tensor([8])
    for t in range(8, 20):
        errors.append(rel_err(decode_one_token(bf16, ids[:, t:t + 1], input_pos), ref[:, t]))
        input_pos += 1
    assert max(errors) < BF16_RTOL, errors
    assert greedy_generate(bf16, [5, 17, 300], 4)  # the whole loop runs in bf16


# -- weight loading ------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_state():
    return dict(make_hf(SMALL).state_dict())


def test_name_mapping_covers_every_parameter(hf_state):
    model = build_model(SMALL)
    ours = {hf_to_xgen_name(name) for name in hf_state}
    assert ours == set(dict(model.named_parameters()))
    assert len(HF_TO_XGEN) == 12
    assert hf_to_xgen_name("model.layers.1.mlp.gate_proj.weight") == "layers.1.feed_forward.w1.weight"
    assert hf_to_xgen_name("model.layers.0.self_attn.q_proj.bias") is None


def test_load_skips_inv_freq_and_casts(hf_state):
    model = build_model(SMALL, dtype=torch.bfloat16)
    items = [("model.layers.0.self_attn.rotary_emb.inv_freq", torch.ones(8)),
             ("model.rotary_emb.inv_freq", torch.ones(8))]
    load_hf_weights(model, items + list(hf_state.items()))
    assert model.layers[1].feed_forward.w3.weight.dtype == torch.bfloat16
    assert torch.equal(model.layers[1].feed_forward.w3.weight,
                       hf_state["model.layers.1.mlp.up_proj.weight"].to(torch.bfloat16))
    assert torch.equal(model.layers[0].ffn_norm.weight,
                       hf_state["model.layers.0.post_attention_layernorm.weight"].bfloat16())


@pytest.mark.parametrize("bad_name", ["model.layers.0.self_attn.q_proj.bias",
                                      "model.layers.2.mlp.up_proj.weight",  # only 2 layers
                                      "transformer.wte.weight"])
def test_load_unknown_name(hf_state, bad_name):
    model = build_model(SMALL)
    items = list(hf_state.items()) + [(bad_name, torch.zeros(64, 64))]
    with pytest.raises(XGenError, match="unknown tensor") as exc:
        load_hf_weights(model, items)
    assert bad_name in str(exc.value)


def test_load_wrong_shape(hf_state):
    state = dict(hf_state)
    state["model.layers.1.self_attn.k_proj.weight"] = torch.zeros(32, 64)
    with pytest.raises(XGenError, match=r"model\.layers\.1\.self_attn\.k_proj\.weight.*\(32, 64\)"):
        load_hf_weights(build_model(SMALL), state.items())


def test_load_missing_tensor(hf_state):
    state = dict(hf_state)
    del state["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(XGenError, match=r"missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight'"):
        load_hf_weights(build_model(SMALL), state.items())
    del state["lm_head.weight"]
    with pytest.raises(XGenError, match=r"and 1 more"):
        load_hf_weights(build_model(SMALL), state.items())


def test_load_duplicate_tensor(hf_state):
    items = list(hf_state.items()) + [("model.norm.weight", hf_state["model.norm.weight"])]
    with pytest.raises(XGenError, match="model.norm.weight.*twice"):
        load_hf_weights(build_model(SMALL), items)


def test_tied_embeddings_without_lm_head():
    args = replace(SMALL, tie_word_embeddings=True)
    hf = make_hf(args)
    state = {k: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    model = build_model(args)
    load_hf_weights(model, state.items())
    assert model.output.weight is model.tok_embeddings.weight
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        assert rel_err(model(ids), hf(ids).logits) < FP32_RTOL


# -- construction ------------------------------------------------------------------------


def test_build_model_materialises_once_on_device():
    model = build_model(SMALL, "cpu", torch.bfloat16)
    assert all(p.device.type == "cpu" and p.dtype == torch.bfloat16 for p in model.parameters())
    cos, sin = precompute_rope(SMALL.head_dim, SMALL.max_seq_len, SMALL.rope_theta)
    assert torch.equal(model.rope_cos, cos) and torch.equal(model.rope_sin, sin)
    assert not model.training
    # a later cast keeps RoPE in fp32 and the caches follow the model dtype
    model = model.float()
    model.setup_caches(1, 8)
    assert model.rope_cos.dtype == torch.float32
    assert model.layers[0].attention.kv_cache.v_cache.dtype == torch.float32


def test_pick_device_dtype():
    assert pick_device_dtype("cpu") == (torch.device("cpu"), torch.float32)
    assert pick_device_dtype("cpu", "bf16") == (torch.device("cpu"), torch.bfloat16)
    assert pick_device_dtype("cpu", torch.float16) == (torch.device("cpu"), torch.float16)
    with pytest.raises(XGenError, match="dtype"):
        pick_device_dtype("cpu", "int8")
    if torch.cuda.is_available():
        assert pick_device_dtype("cuda")[1] == torch.bfloat16
    else:
        assert pick_device_dtype(None) == (torch.device("cpu"), torch.float32)
        with pytest.raises(XGenError, match="CUDA"):
            pick_device_dtype("cuda")
