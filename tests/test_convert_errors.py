"""Bad input to `xgen convert` gets one clear line and a non-zero exit, and no output file."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli import main
from models.errors import XGenError
from tests.cli_helpers import one_error_line, xgen
from tests.read_only_mount import needs_ro_mount, read_only


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result


def assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[-1]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def copy_checkpoint(tiny_checkpoint, tmp_path):
    def make() -> Path:
        dst = tmp_path / "ckpt"
        shutil.copytree(tiny_checkpoint, dst)
        return dst

    return make


def test_missing_folder(tmp_path):
    result = run("convert", str(tmp_path / "nope"), "--out", str(tmp_path / "x.gguf"))
    assert_clean_error(result, "no such folder")
    assert leftovers(tmp_path) == []


def test_folder_without_weights(tmp_path, tiny_checkpoint):
    folder = tmp_path / "empty"
    folder.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", folder)
    result = run("convert", str(folder), "--out", str(tmp_path / "x.gguf"))
    assert_clean_error(result, "no weights found")


def test_non_xgen_config_names_the_field(copy_checkpoint, tmp_path):
    folder = copy_checkpoint()
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (folder / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "x.gguf"
    result = run("convert", str(folder), "--out", str(out))
    assert_clean_error(result, "architectures", "GPT2LMHeadModel")
    assert not out.exists()


def test_config_that_disagrees_with_the_weights(copy_checkpoint, tmp_path):
    folder = copy_checkpoint()
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 1024
    (folder / "config.json").write_text(json.dumps(cfg))
    result = run("convert", str(folder), "--out", str(tmp_path / "x.gguf"))
    assert_clean_error(result, "mlp", "shape")


def test_truncated_shard(copy_checkpoint, tmp_path):
    folder = copy_checkpoint()
    shard = folder / "pytorch_model-00002-of-00002.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    out = tmp_path / "x.gguf"
    result = run("convert", str(folder), "--out", str(out))
    assert_clean_error(result, "pytorch_model-00002-of-00002.bin", "truncated or corrupt")
    assert not out.exists()


def test_missing_shard_listed_in_index(copy_checkpoint, tmp_path):
    folder = copy_checkpoint()
    (folder / "pytorch_model-00001-of-00002.bin").unlink()
    result = run("convert", str(folder), "--out", str(tmp_path / "x.gguf"))
    assert_clean_error(result, "pytorch_model-00001-of-00002.bin", "missing")


@pytest.mark.parametrize("where", ["absolute", "parent"])
def test_an_index_naming_a_shard_outside_the_folder_is_refused(copy_checkpoint, tmp_path, where):
    """The converter read whatever file a local index.json named, anywhere on the disk."""
    folder = copy_checkpoint()
    outside = tmp_path / "outside.bin"
    shutil.move(folder / "pytorch_model-00002-of-00002.bin", outside)  # a real shard, outside
    index_path = folder / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    name = str(outside) if where == "absolute" else "../outside.bin"
    index["weight_map"] = {k: (name if v.endswith("00002-of-00002.bin") else v) for k, v in index["weight_map"].items()}
    index_path.write_text(json.dumps(index))
    result = run("convert", str(folder), "--out", str(tmp_path / "x.gguf"))
    assert_clean_error(result, f"shard {name!r} is outside the checkpoint folder; refused")
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_an_output_that_is_a_folder_is_named_so_with_or_without_force(tiny_checkpoint, tmp_path, force):
    """It said "already exists; pass --force", and with --force, "is a folder"."""
    result = run("convert", str(tiny_checkpoint), "--out", str(tmp_path), *(["--force"] if force else []))
    assert_clean_error(result, f"{tmp_path} is a folder; give a file name")


def test_unknown_type(tiny_checkpoint, tmp_path):
    result = run("convert", str(tiny_checkpoint), "--out", str(tmp_path / "x.gguf"), "--type", "q3_x")
    assert_clean_error(result, "unknown type 'q3_x'", "q4_k_m")


def test_existing_output_needs_force(tiny_checkpoint, tmp_path):
    out = tmp_path / "x.gguf"
    out.write_bytes(b"keep me")
    result = run("convert", str(tiny_checkpoint), "--out", str(out), "--type", "q8_0")
    assert_clean_error(result, "already exists", "--force")
    assert out.read_bytes() == b"keep me"
    result = run("convert", str(tiny_checkpoint), "--out", str(out), "--type", "q8_0", "--force")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"GGUF"


def fail_quantize_at(monkeypatch, call: int, error: BaseException) -> list:
    """Make the converter's n-th quantize call raise `error`; returns the calls seen."""
    import converter.convert as convert_module

    real = convert_module.quantize
    calls = []

    def failing(data, qtype, threads=None):
        calls.append(qtype)
        if len(calls) == call:
            raise error
        return real(data, qtype, threads)

    monkeypatch.setattr(convert_module, "quantize", failing)
    return calls


def test_interrupt_leaves_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    calls = fail_quantize_at(monkeypatch, 5, KeyboardInterrupt())  # what Ctrl+C raises mid-conversion
    out = tmp_path / "out" / "x.gguf"
    out.parent.mkdir()
    result = run("convert", str(tiny_checkpoint), "--out", str(out))
    assert result.exit_code == 130
    assert "interrupted" in result.output
    assert len(calls) == 5
    assert leftovers(out.parent) == []


def test_disk_full_while_writing(tiny_checkpoint, tmp_path, monkeypatch):
    fail_quantize_at(monkeypatch, 3, OSError(errno.ENOSPC, "No space left on device"))
    out = tmp_path / "out" / "x.gguf"
    out.parent.mkdir()
    result = run("convert", str(tiny_checkpoint), "--out", str(out))
    assert_clean_error(result, "disk full")
    assert leftovers(out.parent) == []


def test_not_enough_free_space_is_checked_first(tiny_checkpoint, tmp_path, monkeypatch):
    import converter.convert as convert_module

    monkeypatch.setattr(convert_module.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    out = tmp_path / "x.gguf"
    result = run("convert", str(tiny_checkpoint), "--out", str(out))
    assert_clean_error(result, "needed for the output", "free")
    assert not out.exists()


def test_verify_rejects_a_file_that_is_not_gguf(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf at all" * 100)
    result = run("verify", str(bogus))
    assert_clean_error(result, "bogus.gguf")


@needs_ro_mount
def test_convert_onto_a_read_only_file_system(tmp_path, tiny_checkpoint):
    target = tmp_path / "ro-models"
    target.mkdir()
    out = xgen("convert", str(tiny_checkpoint), "-t", "f16", "-o", str(target / "tiny.gguf"),
               env={"XGEN_HOME": str(tmp_path / "home")}, prefix=read_only(target), timeout=180)
    assert out.returncode == 1
    progress = [line for line in out.stderr.replace("\r", "\n").splitlines() if line.startswith("converting:")]
    assert len(progress) <= 1  # the bar, never started
    line = one_error_line("\n".join(line for line in out.stderr.replace("\r", "\n").splitlines()
                                    if not line.startswith("converting:")))
    assert "tiny.gguf" in line and "Read-only file system" in line
    assert list(target.iterdir()) == []


# -- the free-space check before a conversion --------------------------------------------


@pytest.mark.parametrize("file_type", ["q8_0", "q4_k_m"])
def test_free_space_estimate_is_honest(tiny_checkpoint, tmp_path, monkeypatch, file_type):
    """The space asked for is the output's size (from the tensor types and the vocabulary)
    plus a little, never less: a 34 MB output with 90 MB free used to be refused (the
    check added a flat 64 MB)."""
    import converter.convert as convert_module

    asked: list[int] = []
    real_check = convert_module.check_free_space

    def check(folder, needed):
        asked.append(needed)
        real_check(folder, needed)

    monkeypatch.setattr(convert_module, "check_free_space", check)
    total, used = 10 << 30, 10 << 30
    monkeypatch.setattr(convert_module.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(total, used, 90 << 20))  # 90 MB free
    result = convert_module.convert(tiny_checkpoint, tmp_path / f"tiny-{file_type}.gguf", file_type)
    size = result.path.stat().st_size
    assert 20 << 20 < size < 40 << 20  # the "30 MB output"
    (needed,) = asked
    assert size <= needed <= size + (512 << 10), (size, needed)


def test_free_space_just_below_the_output_size_is_refused(tiny_checkpoint, tmp_path, monkeypatch):
    import converter.convert as convert_module

    out = tmp_path / "tiny.gguf"
    size = convert_module.convert(tiny_checkpoint, out, "q8_0").path.stat().st_size
    out.unlink()
    monkeypatch.setattr(convert_module.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, size - 1))
    with pytest.raises(XGenError, match=r"MiB needed for the output, only 32\.\d MiB free"):
        convert_module.convert(tiny_checkpoint, out, "q8_0")
    assert list(tmp_path.iterdir()) == []



def test_a_second_writer_of_the_same_output_is_refused_at_once(tiny_checkpoint, tmp_path):
    """Two conversions into one file once shared one .partial: the first said "wrote" and
    the file held the second's bytes. While one writes (here: this test holds its lock),
    the other is refused, naming the writer's pid, and touches nothing."""
    import os

    from models.atomic import lock_path, writer_lock

    out = tmp_path / "x.gguf"
    out.write_bytes(b"the first writer's file")
    with writer_lock(out):
        run_ = xgen("convert", str(tiny_checkpoint), "--out", str(out), "--type", "q8_0", "--force")
        assert run_.returncode == 1 and "Traceback" not in run_.stderr
        line = run_.stderr.replace("\r", "\n").split("\n")
        line = [text for text in line if text.strip()][-1]  # after the progress bar, cleared in a terminal
        assert line.startswith("error: ") and f"another xgen is writing {out} (pid {os.getpid()})" in line
        assert out.read_bytes() == b"the first writer's file"
        assert sorted(p.name for p in tmp_path.iterdir()) == [".x.gguf.lock", "x.gguf"]
    assert not lock_path(out).exists()  # the writer removes its lock as it finishes

    # A lock file left by a killed run (nobody holds it) does not stand in the way.
    lock_path(out).write_text("999999\n")
    result = run("convert", str(tiny_checkpoint), "--out", str(out), "--type", "q8_0", "--force")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"GGUF" and not lock_path(out).exists()


def test_convert_force_keeps_the_replaced_files_permissions(tiny_checkpoint, tmp_path):
    import os
    import stat

    out = tmp_path / "x.gguf"
    for mode in (0o600, 0o640):
        out.write_bytes(b"old")
        out.chmod(mode)
        result = run("convert", str(tiny_checkpoint), "--out", str(out), "--type", "q8_0", "--force")
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE(out.stat().st_mode) == mode and out.read_bytes()[:4] == b"GGUF"
    new = tmp_path / "new.gguf"
    old_umask = os.umask(0o027)
    try:
        assert run("convert", str(tiny_checkpoint), "--out", str(new), "--type", "q8_0").exit_code == 0
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o640  # a new model follows the umask
