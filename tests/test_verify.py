"""`xgen verify` judges the logits, and its reference is computed layer by layer.

The reference (models/streamed.py) is checked against the whole fp32 model; verify is
checked on converted tiny GGUFs, untouched and with one tensor overwritten.
"""

from __future__ import annotations

import shutil
import weakref

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from gguf import GGUFReader

from assistant.cli import main
from converter.quant import FILE_TYPES, LOGITS_NMSE_BOUNDS, file_type_of
from converter.verify import PromptAgreement, VerifyReport
from models.checkpoint import CheckpointReader, find_checkpoint
from models.errors import XGenError
from models.streamed import reference_logits, streamed_logits

SEQUENCES = [[50256, 464, 2068, 7586, 21831] * 9, [1, 2, 3], list(range(50250, 50313))]


# -- the layer-by-layer reference -----------------------------------------------------


def test_streamed_logits_equal_the_whole_model(tiny_checkpoint, torch_reference):
    # A vocabulary block that does not divide 51200, so the last block is partial.
    ours = reference_logits(tiny_checkpoint, SEQUENCES, vocab_block=5000)
    assert len(ours) == len(SEQUENCES)
    for ids, got in zip(SEQUENCES, ours):
        with torch.inference_mode():
            want = torch_reference(torch.tensor([ids]))[0]
        assert got.dtype == torch.float32 and got.shape == want.shape == (len(ids), 51200)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_streamed_logits_of_a_safetensors_copy(tmp_path, tiny_args, torch_reference):
    from models.synthetic import write_checkpoint

    folder = write_checkpoint(tmp_path / "st", tiny_args, n_shards=3, seed=0, fmt="safetensors")
    (got,) = reference_logits(folder, SEQUENCES[:1])
    with torch.inference_mode():
        want = torch_reference(torch.tensor(SEQUENCES[:1]))[0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_streamed_logits_hold_one_layer_at_a_time(tiny_checkpoint, tiny_args):
    """Every weight is handed out as a private copy; when the next one is asked for,
    the copies still alive must all belong to one layer (or to none: embeddings, head)."""
    reader = CheckpointReader(find_checkpoint(tiny_checkpoint))
    real_get = reader.get
    alive: dict[int, str] = {}
    seen: list[set[str]] = []

    def get(name: str) -> torch.Tensor:
        seen.append(set(alive.values()))
        copy = real_get(name).clone()
        key = id(copy)
        alive[key] = name
        weakref.finalize(copy, alive.pop, key, None)
        return copy

    reader.get = get
    streamed_logits(reader, tiny_args, SEQUENCES[:2])
    assert len(seen) == 1 + 9 * tiny_args.n_layers + 2  # embeddings, 9 per layer, norm, head
    for held in seen:
        groups = {n.split(".")[2] if n.startswith("model.layers.") else n for n in held}
        groups.discard("model.norm.weight")
        assert len(groups) <= 1, f"held together: {sorted(held)}"


def test_streamed_logits_refuse_bad_input(tmp_path, tiny_checkpoint, tiny_args):
    from dataclasses import replace

    reader = CheckpointReader(find_checkpoint(tiny_checkpoint))
    with pytest.raises(XGenError, match="outside the vocabulary"):
        streamed_logits(reader, tiny_args, [[1, 51200]])
    with pytest.raises(XGenError, match="non-empty"):
        streamed_logits(reader, tiny_args, [[1], []])
    with pytest.raises(XGenError, match="missing tensor 'model.layers.6."):
        streamed_logits(reader, replace(tiny_args, n_layers=7), [[1, 2]])
    with pytest.raises(XGenError, match="unknown tensor 'model.layers.5."):
        streamed_logits(reader, replace(tiny_args, n_layers=5), [[1, 2]])
    with pytest.raises(XGenError, match="has shape"):
        streamed_logits(reader, replace(tiny_args, intermediate_size=768), [[1, 2]])


# -- the bounds table ---------------------------------------------------------------


def test_one_bound_per_file_type_read_back_from_the_file(converted):
    assert set(LOGITS_NMSE_BOUNDS) == set(FILE_TYPES)
    # Tighter bounds for more bits.
    order = ["f32", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"]
    assert [LOGITS_NMSE_BOUNDS[t] for t in order] == sorted(LOGITS_NMSE_BOUNDS[t] for t in order)
    field = GGUFReader(converted("q4_k_m")).get_field("general.file_type").contents()
    assert file_type_of(field).name == "q4_k_m"
    assert file_type_of(12) is None  # MOSTLY_Q3_K_M: not a type this converter writes


def _report(nmse_value: float, file_type: str = "q8_0", bound: float | None = 6e-4) -> VerifyReport:
    report = VerifyReport(path=None, file_type=file_type, nmse_bound=bound, logits_checked=True)
    report.logits = [PromptAgreement("p", 5, 1e-5, 1.0), PromptAgreement("q", 5, nmse_value, 1.0)]
    return report


def test_report_judges_the_worst_prompt_against_the_bound():
    assert _report(5e-4).ok
    assert not _report(7e-4).ok and "7.00e-04 exceeds the q8_0 bound 6.0e-04" in _report(7e-4).problems[0]
    assert not _report(float("nan")).ok  # NaN logits from a damaged scale must not pass
    assert "NMSE is not finite" in _report(float("nan")).problems[0]
    assert not _report(float("inf")).ok
    assert not _report(1e-6, "MOSTLY_Q3_K_M", None).ok  # no bound known: not silently passed
    tokenizer_only = VerifyReport(path=None, file_type="q8_0", nmse_bound=6e-4)
    assert tokenizer_only.ok
    tokenizer_only.tokenizer_mismatches.append("text")
    assert not tokenizer_only.ok


# -- verify on converted files ------------------------------------------------------


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def no_whole_model(monkeypatch):
    """verify must not build the whole model (28 GB at 7B)."""
    import models.hf_weights
    import models.xgen

    def refuse(*args, **kwargs):
        raise AssertionError("verify built the whole model")

    monkeypatch.setattr(models.xgen, "build_model", refuse)
    monkeypatch.setattr(models.hf_weights, "load_hf_weights", refuse)


@pytest.mark.parametrize("file_type", ["f32", "q8_0", "q4_k_m"])
def test_untouched_file_passes(file_type, converted, tiny_checkpoint, no_whole_model):
    result = run("verify", str(converted(file_type)), "--reference", str(tiny_checkpoint))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    logits = [line for line in lines if line.startswith("logits:")]
    assert len(logits) == 3 and all(f"for {file_type})" in line for line in logits)
    assert lines[-1] == f"ok: tokenizer and logits agree with the reference ({file_type})"


def _overwrite(src, dst, tensor: str, fill) -> None:
    """Copy src to dst and write fill(tensor) over that tensor's bytes in place."""
    shutil.copyfile(src, dst)
    t = next(t for t in GGUFReader(src).tensors if t.name == tensor)
    new = np.ascontiguousarray(fill(t)).tobytes()
    assert len(new) == t.n_bytes
    with open(dst, "r+b") as f:
        f.seek(t.data_offset)
        f.write(new)
    assert next(x for x in GGUFReader(dst).tensors if x.name == tensor).data.tobytes() == new


def _same_scale_noise(t):
    """Gaussian values with the original tensor's own mean and std: nothing a range check sees."""
    old = np.asarray(t.data, dtype=np.float32)
    rng = np.random.default_rng(1)
    return (rng.standard_normal(old.shape) * old.std() + old.mean()).astype(np.float32)


def _random_bytes(t):
    return np.random.default_rng(2).integers(0, 256, int(t.n_bytes), dtype=np.uint8)


@pytest.mark.parametrize("file_type, tensor, fill", [
    ("f32", "blk.3.ffn_down.weight", _same_scale_noise),
    ("q8_0", "blk.1.attn_v.weight", _random_bytes),
    ("q4_k_m", "output.weight", _random_bytes),
])
def test_file_with_one_tensor_overwritten_fails(file_type, tensor, fill, converted, tiny_checkpoint,
                                                tmp_path, no_whole_model):
    damaged = tmp_path / f"damaged-{file_type}.gguf"
    _overwrite(converted(file_type), damaged, tensor, fill)

    result = run("verify", str(damaged), "--reference", str(tiny_checkpoint))
    print(result.output)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "Warning" not in result.output
    assert ", 0 mismatches, 0 round-trip failures" in result.output  # only the weights differ
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "logits NMSE" in errors[0], errors[0]
    assert f"the {file_type} bound {LOGITS_NMSE_BOUNDS[file_type]:.1e}" in errors[0], errors[0]
    assert str(damaged) in errors[0] and "verification failed" in errors[0]
    assert "tokeniz" not in errors[0]


def test_without_reference_only_the_tokenizer_is_judged(converted):
    result = run("verify", str(converted("q8_0")))
    assert result.exit_code == 0, result.output
    assert "logits:" not in result.output
    assert result.output.splitlines()[-1].startswith("ok: tokenizer agrees")


def test_convert_verify_fails_on_a_wrong_conversion(tiny_checkpoint, tmp_path, monkeypatch):
    """`convert --verify` exits 1 when the converter itself is wrong (no RoPE permutation)."""
    import converter.tensors

    monkeypatch.setattr(converter.tensors, "permute_rotary", lambda w, n_heads: w)
    out = tmp_path / "unpermuted.gguf"
    result = run("convert", str(tiny_checkpoint), "-o", str(out), "--type", "f16", "--verify")
    assert result.exit_code == 1, result.output
    assert "exceeds the f16 bound" in result.output

    monkeypatch.undo()
    result = run("convert", str(tiny_checkpoint), "-o", str(out), "--type", "f16", "--verify", "--force")
    assert result.exit_code == 0, result.output
    assert "ok: tokenizer and logits agree with the reference (f16)" in result.output


@pytest.mark.parametrize("change, message", [
    ({"vocab_size": 51456}, "51200 logits per token and"),
    ({"n_layers": 5}, "has block_count 6 and"),
    ({"dim": 512, "intermediate_size": 1024, "n_heads": 8, "n_kv_heads": 8}, "has embedding_length 256 and"),
])
def test_reference_from_another_model_is_refused(change, message, converted, tmp_path, tiny_args):
    from dataclasses import replace

    from models.synthetic import write_checkpoint

    other = write_checkpoint(tmp_path / "other", replace(tiny_args, **change), n_shards=1, seed=0)
    result = run("verify", str(converted("q8_0")), "--reference", str(other))
    assert result.exit_code == 1, result.output
    last = result.output.splitlines()[-1]
    assert last.startswith("error: ") and message in last and "not converted from this checkpoint" in last, last


def test_missing_reference_folder_is_one_line(converted, tmp_path):
    result = run("verify", str(converted("q8_0")), "--reference", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"error: {tmp_path / 'nowhere'}: no such folder"]
