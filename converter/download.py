"""Fetch an XGen checkpoint from the Hugging Face Hub: only the files conversion needs.

This is the one place (with tiktoken's first fetch of the GPT-2 ranks) where xgen-local
reaches the network, and only because the user asked for a download. huggingface_hub
resumes interrupted downloads and shows progress per file.
"""

from __future__ import annotations

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
    """Download what conversion needs; returns the local snapshot folder."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    network_errors = _network_errors()
    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
        siblings = info.siblings or []
        patterns = CONFIG_FILES + weight_patterns([s.rfilename for s in siblings])
        needed = sum(s.size or 0 for s in siblings if _matches(s.rfilename, patterns))
        target = cache_dir or _hf_cache_dir()
        target.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target).free
        if needed > free:
            raise XGenError(f"{repo_id} needs {needed / 2**30:.1f} GiB in {target}, "
                            f"only {free / 2**30:.1f} GiB free")
        path = snapshot_download(repo_id, revision=revision, allow_patterns=patterns, cache_dir=cache_dir)
    except GatedRepoError:
        raise XGenError(f"{repo_id} is gated: accept its licence on the Hub, then run "
                        "`huggingface-cli login` and try again") from None
    except RepositoryNotFoundError:
        raise XGenError(f"{repo_id}: no such model on the Hugging Face Hub (or it is private)") from None
    except HfHubHTTPError as exc:
        raise XGenError(f"{repo_id}: download failed ({str(exc).splitlines()[0]})") from None
    except network_errors as exc:
        raise XGenError(f"{repo_id}: cannot reach the Hugging Face Hub ({type(exc).__name__}); "
                        "check the network, or convert a local folder instead") from None
    return Path(path)


def _matches(name: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(name, p) for p in patterns)


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    try:
        import requests

        errors.append(requests.RequestException)
    except ImportError:
        pass
    from huggingface_hub.errors import LocalEntryNotFoundError

    errors.append(LocalEntryNotFoundError)
    return tuple(errors)
