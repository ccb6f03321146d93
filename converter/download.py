"""Download an XGen checkpoint from the Hugging Face Hub whole: only the files conversion needs.

The `--keep-source` path (and repos that ship safetensors): the shards land in the HF cache
and stay there. The default path streams instead (converter/pull.py). Either way, only a
download the user asked for reaches the network. huggingface_hub resumes interrupted
downloads and shows progress per file.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from models.errors import XGenError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CONFIG_FILES = ["config.json", "generation_config.json", "tokenizer_config.json"]


def looks_like_hub_id(text: str) -> bool:
    return bool(HUB_ID.match(text)) and not Path(text).exists()


def weight_patterns(files: list[str]) -> list[str]:
    """Prefer safetensors; otherwise the pickle shards and their index (XGen's layout)."""
    if any(f.endswith(".safetensors") for f in files):
        return ["*.safetensors", "model.safetensors.index.json"]
    return ["pytorch_model*.bin", "pytorch_model.bin.index.json"]


def download(repo_id: str, revision: str | None = None, cache_dir: Path | None = None) -> Path:
    """Download what conversion needs into the HF cache; returns the local snapshot folder."""
    from huggingface_hub import HfApi, snapshot_download

    from converter.hub import check_listed_names, endpoint, hub_errors

    url = endpoint()
    with hub_errors(repo_id):
        info = HfApi(endpoint=url).model_info(repo_id, revision=revision, files_metadata=True)
        siblings = info.siblings or []
        check_listed_names(repo_id, [s.rfilename for s in siblings])
        patterns = CONFIG_FILES + weight_patterns([s.rfilename for s in siblings])
        needed = sum(s.size or 0 for s in siblings if _matches(s.rfilename, patterns))
        target = cache_dir or _hf_cache_dir()
        target.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target).free
        if needed > free:
            raise XGenError(f"{repo_id} needs {needed / 2**30:.1f} GiB in {target}, "
                            f"only {free / 2**30:.1f} GiB free")
        path = snapshot_download(repo_id, revision=revision, allow_patterns=patterns, cache_dir=target,
                                 endpoint=url)
    return Path(path)


def _matches(name: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(name, p) for p in patterns)


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)
