"""The converted GGUF against independent references: the torch model and llama.cpp's quantizer."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q, GGUFReader

from converter.quant import FILE_TYPES, LOGITS_NMSE_BOUNDS, tensor_type
from converter.verify import llama_logits, load_llama, nmse, torch_logits
from models.registry import XGEN_CHAT_TEMPLATE

# Normalised MSE of llama.cpp's logits against the fp32 torch model (tiny random model,
# 45 tokens): the bounds are the ones `xgen verify` enforces (converter/quant.py).
NMSE_BOUNDS = LOGITS_NMSE_BOUNDS
PROMPT = ("The quick brown fox jumps over the lazy dog. "
          "def main():\n    return 42\n\tprint('tabs')   and   spaces. Résumé, naïve, 東京.")


@pytest.fixture(scope="module")
def prompt_ids():
    from models.tokenizer import XGenTokenizer

    ids = XGenTokenizer().encode(PROMPT)
    assert 30 <= len(ids) <= 64
    return ids


@pytest.fixture(scope="module")
def reference_logits(torch_reference, prompt_ids):
    return torch_logits(torch_reference, prompt_ids)


def field(reader: GGUFReader, key: str):
    return reader.get_field(key).contents()


@pytest.mark.parametrize("file_type", list(NMSE_BOUNDS))
def test_logits_match_torch_model(file_type, converted, prompt_ids, reference_logits):
    llm = load_llama(converted(file_type), n_ctx=128, logits_all=True)
    ours = llama_logits(llm, prompt_ids)
    assert ours.shape == reference_logits.shape
    error = nmse(ours, reference_logits)
    print(f"{file_type}: NMSE {error:.3e}, top-1 "
          f"{np.mean(ours.argmax(-1) == reference_logits.argmax(-1)):.3f}")
    assert error < NMSE_BOUNDS[file_type]
    if file_type in ("f32", "f16"):
        assert np.array_equal(ours.argmax(-1), reference_logits.argmax(-1))


def test_without_the_qk_permutation_logits_diverge(tiny_checkpoint, tmp_path, monkeypatch,
                                                   prompt_ids, reference_logits):
    """Negative control: the logits test sees a missing rotary permutation."""
    import converter.tensors
    from converter.convert import convert

    monkeypatch.setattr(converter.tensors, "permute_rotary", lambda w, n_heads: w)
    out = convert(tiny_checkpoint, tmp_path / "unpermuted.gguf", "f32").path
    llm = load_llama(out, n_ctx=128, logits_all=True)
    assert nmse(llama_logits(llm, prompt_ids), reference_logits) > 100 * NMSE_BOUNDS["f32"]


def test_q4_k_m_generates(converted):
    llm = load_llama(converted("q4_k_m"), n_ctx=128)
    out = llm.create_completion("Summarize:", max_tokens=12, temperature=0.0)
    assert out["usage"]["completion_tokens"] > 0


def test_metadata(converted, tiny_args):
    reader = GGUFReader(converted("q4_k_m"))
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "llama.context_length") == tiny_args.max_seq_len
    assert field(reader, "llama.embedding_length") == tiny_args.dim
    assert field(reader, "llama.block_count") == tiny_args.n_layers
    assert field(reader, "llama.feed_forward_length") == tiny_args.intermediate_size
    assert field(reader, "llama.attention.head_count") == tiny_args.n_heads
    assert field(reader, "llama.attention.head_count_kv") == tiny_args.n_kv_heads
    assert field(reader, "llama.rope.dimension_count") == tiny_args.head_dim
    assert field(reader, "llama.rope.freq_base") == pytest.approx(tiny_args.rope_theta)
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(tiny_args.norm_eps)
    assert field(reader, "general.file_type") == int(FILE_TYPES["q4_k_m"].ftype)
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert field(reader, "tokenizer.ggml.bos_token_id") == 50256
    assert field(reader, "tokenizer.ggml.eos_token_id") == 50256
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    assert len(field(reader, "tokenizer.ggml.tokens")) == tiny_args.vocab_size
    assert field(reader, "tokenizer.chat_template") == XGEN_CHAT_TEMPLATE


def test_llama_cpp_reads_context_and_no_bos(converted, tiny_args):
    llm = load_llama(converted("q8_0"), n_ctx=0)
    assert llm.n_ctx() == tiny_args.max_seq_len
    assert llm.tokenize(b"hello", add_bos=True) == llm.tokenize(b"hello", add_bos=False)


def test_q4_k_m_policy_on_six_layers(converted):
    """XGEN.md: on a 6-layer model, attn_v and ffn_down of layers 2 and 5 get Q6_K."""
    types = {t.name: t.tensor_type for t in GGUFReader(converted("q4_k_m")).tensors}
    assert types["output.weight"] == Q.Q6_K
    assert types["token_embd.weight"] == Q.Q4_K
    assert types["output_norm.weight"] == Q.F32
    for layer in range(6):
        more = Q.Q6_K if layer in (2, 5) else Q.Q4_K
        assert types[f"blk.{layer}.attn_v.weight"] == more
        assert types[f"blk.{layer}.ffn_down.weight"] == more
        assert types[f"blk.{layer}.attn_q.weight"] == Q.Q4_K
        assert types[f"blk.{layer}.attn_norm.weight"] == Q.F32


def test_policy_falls_back_like_llama_cpp():
    ft = FILE_TYPES["q4_k_m"]
    # 4096-wide rows take K-quants; 100-wide rows do not even take 32-blocks -> F16.
    assert tensor_type("blk.0.attn_q.weight", (4096, 4096), ft, 32) == Q.Q4_K
    assert tensor_type("blk.0.attn_q.weight", (64, 96), ft, 32) == Q.Q5_0
    assert tensor_type("blk.0.attn_q.weight", (64, 100), ft, 32) == Q.F16
    assert tensor_type("output.weight", (51200, 96), ft, 32) == Q.Q8_0
    # XGen-7B's 32 layers: layers 0-3, 28-31 and every third in between.
    v_layers = [i for i in range(32) if tensor_type(f"blk.{i}.attn_v.weight", (4096, 4096), ft, 32) == Q.Q6_K]
    assert v_layers == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]


@pytest.mark.parametrize("file_type", ["f16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"])
def test_single_pass_equals_llama_model_quantize(file_type, converted, tmp_path):
    """Our one-pass output, tensor by tensor, equals llama.cpp quantizing our f32 GGUF."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(FILE_TYPES[file_type].ftype)
    params.nthread = 2
    reference = tmp_path / f"reference-{file_type}.gguf"
    rc = llama_cpp.llama_model_quantize(str(converted("f32")).encode(), str(reference).encode(), params)
    assert rc == 0
    theirs = {t.name: t for t in GGUFReader(reference).tensors}
    ours = {t.name: t for t in GGUFReader(converted(file_type)).tensors}
    assert sorted(ours) == sorted(theirs)
    for name, t in theirs.items():
        assert ours[name].tensor_type == t.tensor_type, name
        assert list(ours[name].shape) == list(t.shape), name
        assert ours[name].data.tobytes() == t.data.tobytes(), name


def test_safetensors_checkpoint_converts_identically(tmp_path, tiny_args, converted):
    from converter.convert import convert
    from models.synthetic import write_checkpoint

    folder = write_checkpoint(tmp_path / "st", tiny_args, n_shards=3, seed=0, fmt="safetensors")
    out = convert(folder, tmp_path / "st.gguf", "q8_0").path
    ours = {t.name: t.data.tobytes() for t in GGUFReader(out).tensors}
    reference = {t.name: t.data.tobytes() for t in GGUFReader(converted("q8_0")).tensors}
    assert ours == reference


def test_per_tensor_error_report_measures_what_was_written(tiny_checkpoint, tiny_args, tmp_path):
    """`measure_error` reports, per tensor, the NMSE of the weights read back from the
    written file against the checkpoint's (after the RoPE permutation)."""
    import gguf.quants

    from converter.convert import convert
    from converter.tensors import to_gguf_array
    from models.checkpoint import CheckpointReader, find_checkpoint

    result = convert(tiny_checkpoint, tmp_path / "m.gguf", "q4_k_m", measure_error=True)
    assert set(result.errors) == {t.source.gguf_name for t in result.tensors}
    written = {t.name: t for t in GGUFReader(result.path).tensors}
    reader = CheckpointReader(find_checkpoint(tiny_checkpoint))
    by_type: dict[str, list[float]] = {}
    for planned in result.tensors:
        name = planned.source.gguf_name
        w = to_gguf_array(planned.source, reader.get(planned.source.hf_name), tiny_args).astype(np.float64)
        t = written[name]
        back = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(w.shape)
        expected = float(np.sum((back - w) ** 2) / np.sum(w ** 2))
        assert result.errors[name] == pytest.approx(expected, rel=1e-6, abs=1e-12), name
        by_type.setdefault(planned.qtype.name, []).append(result.errors[name])
    assert set(by_type) == {"F32", "Q4_K", "Q6_K"}
    assert max(by_type["F32"]) == 0.0
    # More bits, less error: 4-bit K-quants lose ~1e-2 of a Gaussian's energy, 6-bit ~16x less.
    q4, q6 = np.mean(by_type["Q4_K"]), np.mean(by_type["Q6_K"])
    assert 2e-3 < q4 < 2e-2 and q6 < q4 / 8


def test_convert_report_from_the_command_line(tiny_checkpoint, tmp_path):
    from click.testing import CliRunner

    from assistant.cli import main

    out = tmp_path / "m.gguf"
    result = CliRunner().invoke(main, ["convert", str(tiny_checkpoint), "-o", str(out), "--type", "q8_0",
                                       "--report"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    rows = [line for line in lines if line.startswith(("blk.", "token_embd", "output"))]
    assert len(rows) == len(GGUFReader(out).tensors)
    summary = next(line for line in lines if line.startswith("Q8_0:"))
    assert "mean NMSE" in summary and out.is_file()
