"""Engines: what runs the model. `open_engine` picks one by kind.

* "llama": a GGUF file through llama.cpp (assistant/engines/llama.py);
* "torch": a Hugging Face checkpoint folder through PyTorch (torch_engine.py);
* "remote": an OpenAI-compatible server at a URL (remote.py).

Engine modules are imported on demand: llama.cpp, torch and httpx are heavy imports.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from assistant.engines.base import (Completion, ContextOverflow, Engine, GenerationStats, ReplyDecoder,
                                    SamplingSettings)
from models.errors import XGenError

ENGINE_KINDS = ("llama", "torch", "remote")

__all__ = ["ENGINE_KINDS", "Completion", "ContextOverflow", "Engine", "GenerationStats", "ReplyDecoder",
           "SamplingSettings", "open_engine"]


def _engine_class(kind: str):
    if kind == "llama":
        from assistant.engines.llama import LlamaEngine

        return LlamaEngine
    if kind == "torch":
        from assistant.engines.torch_engine import TorchEngine

        return TorchEngine
    from assistant.engines.remote import RemoteEngine

    return RemoteEngine


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _check_model(kind: str, model: str | Path) -> None:
    text = str(model)
    if kind == "remote":
        if not _is_url(text):
            raise XGenError(f"the remote engine needs a server address such as http://127.0.0.1:8080, not {text!r}")
        return
    if _is_url(text):
        raise XGenError(f"{text} is a server address; use the remote engine for it")
    path = Path(model)
    if not path.exists():
        raise XGenError(f"{path}: no such file or folder")
    if kind == "llama":
        if path.is_dir():
            raise XGenError(f"{path} is a folder; the llama engine needs a .gguf file (use the torch engine "
                            f"for a Hugging Face checkpoint folder, or convert it with `xgen convert`)")
        return
    # torch
    if path.is_file():
        with open(path, "rb") as f:
            is_gguf = f.read(4) == b"GGUF"
        if is_gguf or path.suffix.lower() == ".gguf":
            raise XGenError(f"{path} is a GGUF file; the torch engine needs a Hugging Face checkpoint folder "
                            f"(use the llama engine for GGUF files)")
        raise XGenError(f"{path} is a file; the torch engine needs a Hugging Face checkpoint folder")


def open_engine(kind: str, model: str | Path, /, **options) -> Engine:
    """Load `model` with the engine `kind` ("llama", "torch" or "remote").

    `options` are the engine's keyword arguments (e.g. n_ctx, n_threads for llama;
    device, dtype, compile for torch; api_key, n_ctx, timeout for remote). Raises
    XGenError for an unknown kind, a model of the wrong kind or an unknown option.
    """
    kind = str(kind).strip().lower()
    if kind not in ENGINE_KINDS:
        raise XGenError(f"unknown engine {kind!r}; choose one of: {', '.join(ENGINE_KINDS)}")
    _check_model(kind, model)
    cls = _engine_class(kind)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        allowed = ", ".join(sorted(accepted - {"model_path", "folder", "base_url"}))
        raise XGenError(f"the {kind} engine has no option {unknown[0]!r} (it takes: {allowed})")
    if kind == "remote":
        return cls(str(model), **options)
    return cls(Path(model), **options)
