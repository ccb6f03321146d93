"""`xgen models` lists only usable files of the models folder and says why the rest are left out."""

from __future__ import annotations

import os

from tests.cli_helpers import cli

def test_models_lists_only_usable_files(home, converted):
    models = home / "models"
    models.mkdir()
    (models / "dangling.gguf").symlink_to(home / "gone.gguf")
    (models / "folder.gguf").mkdir()
    (models / "notes.gguf").write_text("not a model\n")
    real = converted("q8_0")
    (models / "truncated.gguf").write_bytes(real.read_bytes()[: 64 << 10])
    (models / "good.gguf").symlink_to(real)  # a link to a real model is a model
    os.mkfifo(models / "pipe.gguf")

    result = cli("models")
    assert result.exit_code == 0, result.output
    listed, _, rest = result.output.partition("Local models in")[2].partition("Not usable (left out):")
    assert [line.split()[0] for line in listed.splitlines()[1:] if line.strip()] == ["good.gguf"]
    reasons = {line.split()[0]: line.split(None, 1)[1] for line in rest.split("Default:")[0].splitlines()
               if line.strip()}
    assert reasons == {"dangling.gguf": "a broken symbolic link", "folder.gguf": "a folder, not a file",
                       "notes.gguf": "not a GGUF file", "pipe.gguf": "not a regular file",
                       "truncated.gguf": reasons["truncated.gguf"]}
    assert reasons["truncated.gguf"].startswith(("truncated", "damaged GGUF header"))

    from assistant.modelref import local_gguf_files

    assert [p.name for p in local_gguf_files()] == ["good.gguf", "truncated.gguf"]  # cheap check: the magic



def test_models_lists_files_with_hostile_hyper_parameters_as_unusable(home, converted):
    """Alignment 0 once raised ZeroDivisionError and a number spelled as text a ValueError,
    out of `xgen models`: one bad file in the folder made the whole listing crash."""
    from tests.hostile_gguf import with_value

    models = home / "models"
    models.mkdir()
    real = converted("q8_0").read_bytes()
    (models / "align0.gguf").write_bytes(with_value(real, "general.alignment", 4, 0))
    (models / "ctxtext.gguf").write_bytes(with_value(real, "llama.context_length", 8, "8192"))
    (models / "layers.gguf").write_bytes(with_value(real, "llama.block_count", 4, 2**31))
    (models / "good.gguf").write_bytes(real)

    result = cli("models")
    assert result.exit_code == 0, result.output
    rest = result.output.partition("Not usable (left out):")[2].split("Default:")[0]
    reasons = {line.split()[0]: line.split(None, 1)[1] for line in rest.splitlines() if line.strip()}
    assert sorted(reasons) == ["align0.gguf", "ctxtext.gguf", "layers.gguf"], result.output
    assert "general.alignment is 0" in reasons["align0.gguf"]
    assert "llama.context_length is '8192'" in reasons["ctxtext.gguf"]
    assert "good.gguf" in result.output.partition("Not usable")[0]


def test_no_usable_model_names_the_file_left_out_instead_of_a_27_gb_download(home, tmp_path):
    """An unreadable model file said "no model found: run `xgen pull` (about 27 GB)"."""
    models = home / "models"
    models.mkdir()
    (models / "xgen-7b-8k-inst-q4_k_m.gguf").symlink_to(tmp_path / "moved-away.gguf")
    doc = tmp_path / "n.txt"
    doc.write_text("notes\n")
    result = cli("ask", str(doc), "-q", "hi")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"error: no usable model: xgen-7b-8k-inst-q4_k_m.gguf in {models} is a broken symbolic link; "
        "fix or remove it (`xgen models` says why each file is left out)")
    (models / "xgen-7b-8k-inst-q4_k_m.gguf").unlink()
    assert "xgen pull xgen-7b-8k-inst" in cli("ask", str(doc), "-q", "hi").output  # a truly empty folder
