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

