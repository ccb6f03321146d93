"""`xgen pull` / `xgen convert <hub id>` stream the checkpoint from a Hub stand-in on 127.0.0.1.

The stand-in (bench/hub_standin.py) serves the tiny checkpoint with the endpoints
huggingface_hub calls, HTTP ranges, throttling and scripted faults; nothing here reaches
the network. The reference for every streamed GGUF is the same checkpoint converted from
its local folder: the bytes must be identical.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli import main
from converter.hub import RetryPolicy
from converter.resume import record_path
from models.atomic import partial_path
from models.errors import XGenError
from models.registry import get_variant
from bench.hub_standin import Fault, HubStandIn, Repo
from tests.cli_helpers import xgen
from tests.read_only_mount import needs_ro_mount, read_only

ROOT = Path(__file__).resolve().parents[1]
REPO_ID = "Salesforce/xgen-7b-8k-inst"
VARIANT = get_variant("xgen-7b-8k-inst")
TYPE = "q8_0"  # the quickest type to write; the tensor path is the same for every type
FAST_RETRY = RetryPolicy(attempts=3, base_wait=0.01, max_wait=0.05, timeout=5)


@pytest.fixture(scope="module")
def reference(tiny_checkpoint, tmp_path_factory) -> bytes:
    """The tiny checkpoint converted from its local folder, as `xgen convert FOLDER --variant` does."""
    from converter.convert import convert

    out = tmp_path_factory.mktemp("reference") / "ref.gguf"
    return convert(tiny_checkpoint, out, TYPE, variant=VARIANT, name=VARIANT.name).path.read_bytes()


@pytest.fixture
def hub(tiny_checkpoint, tmp_path, monkeypatch):
    hf_cache = tmp_path / "hf-cache"
    with HubStandIn({REPO_ID: Repo(tiny_checkpoint), "acme/gated-model": Repo(tiny_checkpoint, gated=True),
                     "acme/escaping-model": Repo(tiny_checkpoint, listed_only={"../../outside.bin": 10}),
                     "acme/absolute-model": Repo(tiny_checkpoint, listed_only={"/etc/passwd.bin": 10})}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        server.hf_cache = hf_cache
        yield server


def shard_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.bin"))


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def pull(out: Path, **options):
    from converter.pull import pull as run_pull

    options.setdefault("retry", FAST_RETRY)
    return run_pull(REPO_ID, out, TYPE, variant=VARIANT, **options)


def folder_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- streaming ----------------------------------------------------------------------------


def test_pull_streams_the_same_bytes_as_a_local_conversion(hub, reference, tiny_checkpoint, xgen_home, tmp_path,
                                                         monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("XGEN_HOME", str(home))
    result = run("pull", "xgen-7b-8k-inst", "--type", TYPE)
    assert result.exit_code == 0, result.output
    out = home / "models" / f"xgen-7b-8k-inst-{TYPE}.gguf"
    assert out.read_bytes() == reference
    assert folder_files(out.parent) == [out.name]  # no partial, no record left
    # Nothing of the checkpoint was kept on disk, and each shard byte was fetched at most once
    # (the rotary buffers are skipped).
    assert folder_files(hub.hf_cache) == []
    assert 0.99 * shard_bytes(tiny_checkpoint) < hub.stats.file_bytes(".bin") < 1.01 * shard_bytes(tiny_checkpoint)
    ranged = [r for r in hub.stats.requests if r[1].endswith(".bin")]
    assert ranged and all(rng.startswith("bytes=") for _, _, rng in ranged)
    assert "streaming Salesforce/xgen-7b-8k-inst" in result.output
    # The tiny config says 512 tokens; the published variant was trained for 8192.
    assert "trained for 8192" in result.output


def test_convert_hub_id_with_keep_source_downloads_then_converts(hub, reference, tmp_path):
    out = tmp_path / "kept.gguf"
    result = run("convert", REPO_ID, "--keep-source", "-o", str(out), "--type", TYPE)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == reference
    kept = list(hub.hf_cache.glob("*/snapshots/*/pytorch_model-*.bin"))
    assert len(kept) == 2  # the old path: the shards stay in the HF cache


def test_a_safetensors_repo_is_downloaded_whole_with_a_note(hub, reference, tiny_args, tmp_path_factory, tmp_path):
    """Only pickle shards are streamed; safetensors take the --keep-source path, and say so."""
    from models.synthetic import write_checkpoint

    folder = write_checkpoint(tmp_path_factory.mktemp("st"), tiny_args, n_shards=2, seed=0, fmt="safetensors")
    hub.repos["acme/st-model"] = Repo(folder)
    out = tmp_path / "st.gguf"
    result = run("convert", "acme/st-model", "--variant", "xgen-7b-8k-inst", "-o", str(out), "--type", TYPE)
    assert result.exit_code == 0, result.output
    assert "ships safetensors" in result.output
    assert out.read_bytes() == reference
    assert len(list(hub.hf_cache.glob("*/snapshots/*/*.safetensors"))) == 2


def test_parallel_range_requests_within_a_byte_budget(hub, reference, tmp_path, monkeypatch):
    """Large tensors go out as several concurrent ranges; no more than the budget is fetched ahead."""
    import converter.stream as stream

    hub.connection_rate = 40e6  # a slow route per connection: parallel ranges help
    ahead: list[int] = []
    real_start = stream.Prefetcher._start

    def spy(self, tensor):
        job = real_start(self, tensor)
        ahead.append(tensor.entry.span)
        return job

    monkeypatch.setattr(stream.Prefetcher, "_start", spy)
    out = tmp_path / "p.gguf"
    budget = 8 << 20
    result = pull(out, connections=4, chunk_bytes=1 << 20, budget=budget)
    assert out.read_bytes() == reference
    assert hub.stats.max_active >= 2
    assert len(ahead) == len(result.tensors)
    biggest = max(ahead)
    assert biggest > budget  # the embeddings: a tensor larger than the budget still goes through


def test_rows_quantized_as_they_arrive_give_the_same_bytes(hub, reference, tmp_path, monkeypatch):
    """Blocks of rows (whole heads for q and k) are quantized while the tensor still arrives."""
    import converter.pull as pull_module

    monkeypatch.setattr(pull_module, "ROWS_BYTES", 48 << 10)  # 48 rows: q/k blocks round to 64-row heads
    blocks: list[tuple[str, int]] = []
    real = pull_module.quantize

    def spy(block, qtype, threads=None):
        blocks.append((qtype.name, block.shape[0]))
        return real(block, qtype, threads)

    monkeypatch.setattr(pull_module, "quantize", spy)
    hub.connection_rate = 60e6
    out = tmp_path / "rows.gguf"
    pull(out, chunk_bytes=256 << 10)
    assert out.read_bytes() == reference
    assert len(blocks) > 2 * 57  # more blocks than tensors: the big ones went in pieces


# -- resume -------------------------------------------------------------------------------


def stop_after(n_tensors: int):
    """A progress callback that interrupts the pull (as Ctrl+C would) once n tensors are written."""
    def progress(p):
        if p.tensor is not None and p.tensors_done == n_tensors:
            raise KeyboardInterrupt
    return progress


def test_interrupted_pull_resumes_with_only_the_missing_tensors(hub, reference, tmp_path):
    out = tmp_path / "r.gguf"

    from converter.pull import PullInterrupted

    with pytest.raises(PullInterrupted, match="5 of 57 tensors are kept.*run the same command again"):
        pull(out, progress=stop_after(5))
    assert not out.exists()
    assert partial_path(out).is_file() and record_path(out).is_file()
    record = json.loads(record_path(out).read_text())
    assert len(record["tensors"]) == 5
    first_run = hub.stats.file_bytes(".bin")
    hub.stats.bytes_sent.clear()

    notes: list[str] = []
    pull(out, notify=notes.append)
    assert out.read_bytes() == reference
    assert any("resuming: 5 of 57" in n for n in notes)
    assert folder_files(tmp_path) == ["r.gguf"]
    # The second run fetched the rest, not the first five tensors again (output, output_norm
    # and token_embd are the first in GGUF order: the two vocabulary-sized matrices).
    assert hub.stats.file_bytes(".bin") < shard_bytes(hub.repos[REPO_ID].folder) - first_run / 2


def test_a_damaged_partial_is_trimmed_to_its_valid_tensors(hub, reference, tmp_path):
    from converter.pull import PullInterrupted

    out = tmp_path / "d.gguf"

    with pytest.raises(PullInterrupted):
        pull(out, progress=stop_after(12))
    record = json.loads(record_path(out).read_text())
    sixth_end = record["tensors"][5][1]
    with open(partial_path(out), "r+b") as f:  # flip a byte inside the 7th tensor
        f.seek(sixth_end + 100)
        byte = f.read(1)
        f.seek(sixth_end + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    notes: list[str] = []
    pull(out, notify=notes.append)
    assert any("resuming: 6 of 57" in n for n in notes)
    assert out.read_bytes() == reference


def test_another_type_does_not_resume_a_partial(hub, tmp_path):
    from converter.pull import PullInterrupted, pull as run_pull

    out = tmp_path / "t.gguf"

    with pytest.raises(PullInterrupted):
        pull(out, progress=stop_after(3))
    notes: list[str] = []
    run_pull(REPO_ID, out, "f16", variant=VARIANT, notify=notes.append, retry=FAST_RETRY)
    assert not any("resuming" in n for n in notes)
    from gguf import GGUFReader

    assert GGUFReader(out).get_field("general.file_type").contents() == 1  # MOSTLY_F16


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_mid_pull_then_the_same_command_finishes_it(hub, reference, tmp_path, sig):
    """A real `xgen convert <hub id>` process killed (kill -9, or `kill` as Ctrl+C is handled)
    while it writes tensors; the same command then fetches the rest."""
    hub.rate = 15e6  # ~8 s for the tiny checkpoint: time to land the kill mid-way
    out = tmp_path / "k.gguf"
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1")
    cmd = [sys.executable, "-m", "assistant.cli", "convert", REPO_ID, "-o", str(out), "--type", TYPE]
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if len(json.loads(record_path(out).read_text())["tensors"]) >= 4:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "log").read_text()
        proc.send_signal(sig)
        assert proc.wait(30) == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not out.exists() and partial_path(out).is_file()
    kept = len(json.loads(record_path(out).read_text())["tensors"])
    if sig == signal.SIGTERM:
        log = (tmp_path / "log").read_text()
        assert "Traceback" not in log
        assert f"interrupted; {kept} of 57 tensors are kept" in log and "run the same command again" in log
    hub.rate = None
    hub.stats.bytes_sent.clear()
    result = run("convert", REPO_ID, "-o", str(out), "--type", TYPE)
    assert result.exit_code == 0, result.output
    assert f"resuming: {kept} of 57" in result.output
    assert out.read_bytes() == reference
    assert folder_files(tmp_path) == ["k.gguf", "log"]


# -- integrity and transient errors -------------------------------------------------------


def test_transient_errors_are_retried(hub, reference, tmp_path):
    hub.faults += [Fault("status", file="-00002-of", status=503, times=2),
                   Fault("status", file="-00001-of", status=429, retry_after=0),
                   Fault("reset", file="-00001-of", after=300_000, times=2, min_length=1_000_000),
                   Fault("status", file="-00002-of", status=502)]
    out = tmp_path / "x.gguf"
    pull(out, retry=RetryPolicy(attempts=4, base_wait=0.01, max_wait=0.05))
    assert out.read_bytes() == reference
    assert all(f.times == 0 for f in hub.faults)
    # A body cut short is resumed: the retry asks for the bytes after the 300,000 received.
    starts = {int(rng[6:].split("-")[0]) for _, name, rng in hub.stats.requests if "00001" in name and rng}
    assert any(s + 300_000 in starts for s in starts)


def test_corrupted_bytes_are_fetched_again(hub, reference, tmp_path):
    hub.faults.append(Fault("corrupt", file="-00002-of", after=5000, times=1, min_length=100_000))
    out = tmp_path / "c.gguf"
    pull(out, chunk_bytes=64 << 20)
    assert out.read_bytes() == reference
    assert hub.faults[0].times == 0


def test_persistent_corruption_is_refused_and_nothing_is_kept(hub, tmp_path):
    hub.faults.append(Fault("corrupt", file="-00002-of", after=5000, times=10_000, min_length=100_000))
    out = tmp_path / "bad.gguf"
    result = run("convert", REPO_ID, "-o", str(out), "--type", TYPE)
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.replace("\r", "\n").splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and "CRC-32" in lines[-1] and "nothing was written" in lines[-1]
    assert "Traceback" not in result.output
    assert folder_files(tmp_path) == []


def test_lost_network_keeps_the_partial_and_says_how_to_resume(hub, reference, tmp_path):
    from converter.hub import TransferError

    # The index reads go through; then every tensor read of the first shard breaks off: the
    # first two tensors in GGUF order (output, output_norm) come from the second one.
    hub.faults.append(Fault("reset", file="-00001-of", after=1000, times=10_000, min_length=100_000))
    out = tmp_path / "n.gguf"
    with pytest.raises(TransferError, match="run the same command again to resume") as info:
        pull(out)
    assert len(str(info.value).splitlines()) == 1
    kept = len(json.loads(record_path(out).read_text())["tensors"])
    assert kept > 0 and partial_path(out).is_file()
    hub.faults.clear()
    pull(out)
    assert out.read_bytes() == reference


def test_a_hub_that_keeps_failing_is_one_line_that_says_to_resume(hub, tmp_path):
    from converter.hub import TransferError

    hub.faults.append(Fault("status", file="-00001-of", status=503, times=10_000, min_length=100_000))
    with pytest.raises(TransferError, match="kept answering HTTP 503.*run the same command again to resume"):
        pull(tmp_path / "s.gguf")
    assert partial_path(tmp_path / "s.gguf").is_file()


# -- errors the user can act on -----------------------------------------------------------


@pytest.mark.parametrize("repo, fragment", [("acme/no-such-model", "no such model"),
                                            ("acme/gated-model", "is gated")])
def test_missing_and_gated_repos_are_one_line_errors(hub, tmp_path, repo, fragment):
    out = tmp_path / "x.gguf"
    result = run("convert", repo, "-o", str(out))
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.replace("\r", "\n").splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and fragment in lines[-1], result.output
    assert "Traceback" not in result.output
    assert folder_files(tmp_path) == []


@pytest.mark.parametrize("keep_source", [False, True], ids=["streamed", "keep-source"])
@pytest.mark.parametrize("repo, name", [("acme/escaping-model", "../../outside.bin"),
                                        ("acme/absolute-model", "/etc/passwd.bin")])
def test_a_listing_with_a_name_leaving_the_folder_is_refused_naming_it(hub, tmp_path, repo, name, keep_source):
    """--keep-source ended in huggingface_hub's ValueError traceback."""
    out = tmp_path / "x.gguf"
    result = run("convert", repo, "-o", str(out), *(["--keep-source"] if keep_source else []))
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.replace("\r", "\n").splitlines() if ln.strip()]
    assert lines[-1] == (f"error: {repo}: the Hub lists a file named {name!r}, which would be written outside the "
                         "download folder; refused (is this the repository you meant?)"), result.output
    assert folder_files(tmp_path) == ["hf-cache"] or folder_files(tmp_path) == []
    assert not (tmp_path / "outside.bin").exists()


@needs_ro_mount
def test_keep_source_with_a_read_only_cache_names_the_cache_not_the_network(tiny_checkpoint, tmp_path):
    """It said "cannot reach the Hugging Face Hub ... check the network"."""
    cache = tmp_path / "ro-cache"
    cache.mkdir()
    with HubStandIn({REPO_ID: Repo(tiny_checkpoint)}) as server:
        result = xgen("convert", REPO_ID, "--keep-source", "-o", str(tmp_path / "x.gguf"),
                      env={"HF_ENDPOINT": server.url, "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_XET": "1",
                           "HF_HUB_OFFLINE": "0"}, prefix=read_only(cache))
    assert result.returncode == 1
    line = [ln for ln in result.stderr.replace("\r", "\n").splitlines() if ln.strip()][-1]
    assert line.startswith(f"error: {REPO_ID}: cannot write ") and "Read-only file system" in line, result.stderr
    assert "network" not in line


@needs_ro_mount
def test_pull_into_a_read_only_models_folder_is_the_real_error(hub, tmp_path):
    """A traceback from discard() hid it."""
    models = tmp_path / "models"
    models.mkdir()
    result = xgen("convert", REPO_ID, "-o", str(models / "x.gguf"),
                  env={"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(hub.hf_cache), "HF_HUB_OFFLINE": "0"},
                  prefix=read_only(models))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.replace("\r", "\n").splitlines() if ln.strip()]
    assert lines[-1] == f"error: cannot write {models / 'x.gguf'}: Read-only file system", result.stderr


def test_unreachable_hub_is_a_one_line_error(tmp_path, monkeypatch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(XGenError, match="cannot reach the Hugging Face Hub"):
        from converter.pipeline import convert_source

        convert_source(REPO_ID, tmp_path / "x.gguf")


# -- the context the model was trained for ------------------------------------------------


@pytest.mark.parametrize("config_value", [2048, None])
def test_a_published_variant_gets_its_training_context(tiny_checkpoint, tmp_path, config_value):
    """config.json says 2048 (or nothing, which transformers reads as 2048): the 8K model's
    GGUF still records 8192, with one line saying so; an unknown folder keeps its config's."""
    from gguf import GGUFReader

    folder = tmp_path / "under-reports"
    shutil.copytree(tiny_checkpoint, folder)
    cfg = json.loads((folder / "config.json").read_text())
    if config_value is None:
        del cfg["max_position_embeddings"]
    else:
        cfg["max_position_embeddings"] = config_value
    (folder / "config.json").write_text(json.dumps(cfg))

    out = tmp_path / "v.gguf"
    result = run("convert", str(folder), "--variant", "xgen-7b-8k-base", "-o", str(out), "--type", TYPE)
    assert result.exit_code == 0, result.output
    assert GGUFReader(out).get_field("llama.context_length").contents() == 8192
    notes = [ln for ln in result.output.splitlines() if "trained for 8192" in ln]
    assert len(notes) == 1 and "2048" in notes[0]

    plain = tmp_path / "plain.gguf"
    result = run("convert", str(folder), "-o", str(plain), "--type", TYPE)
    assert result.exit_code == 0, result.output
    assert GGUFReader(plain).get_field("llama.context_length").contents() == 2048
    assert "trained for" not in result.output


def test_default_output_name_and_revision_only_for_hub_ids(tmp_path, monkeypatch, tiny_checkpoint):
    from converter.pipeline import convert_source, output_path

    monkeypatch.setenv("XGEN_HOME", str(tmp_path / "home"))
    path, name = output_path(REPO_ID)
    assert path == tmp_path / "home" / "models" / "xgen-7b-8k-inst-q4_k_m.gguf" and name == "xgen-7b-8k-inst"
    path, name = output_path("acme/other-model", "q8_0")
    assert path.name == "other-model-q8_0.gguf"
    path, name = output_path(str(tiny_checkpoint), "f16", "xgen-7b-8k-base")
    assert path.name == "xgen-7b-8k-base-f16.gguf"
    with pytest.raises(XGenError, match="--revision applies to a Hub id"):
        convert_source(str(tiny_checkpoint), tmp_path / "x.gguf", revision="main")


def test_a_second_pull_of_the_same_model_is_refused_before_it_reaches_the_hub(hub, tmp_path):
    """Two pulls 1.5 s apart once ended in a traceback from os.replace, one writing into
    the other's partial."""
    import os

    from models.atomic import writer_lock

    out = tmp_path / "m.gguf"
    with writer_lock(out):
        with pytest.raises(XGenError, match=rf"another xgen is writing .*m\.gguf \(pid {os.getpid()}\)"):
            pull(out)
    assert hub.stats.requests == []
    assert [name for name in folder_files(tmp_path) if name != "hf-cache"] == []
