"""Which model a `--model NAME|PATH|URL` means, and which engine and prompt style it takes.

Resolution never downloads: a registry name that is not in the models folder is an
error that says how to get it (`xgen pull NAME`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from assistant.prompt import CHAT, COMPLETION, PromptStyle
from models.errors import XGenError
from models.paths import models_dir
from models.registry import DEFAULT_VARIANT, VARIANTS

DEMO = "demo"
DEMO_FILE_PREFIX = "xgen-demo-"


@dataclass(frozen=True)
class ModelRef:
    name: str
    kind: str  # "gguf", "hf" (a checkpoint folder) or "url"
    location: str
    style: PromptStyle

    @property
    def default_engine(self) -> str:
        return {"gguf": "llama", "hf": "torch", "url": "remote"}[self.kind]


def local_gguf_files() -> list[Path]:
    return sorted(models_dir().glob("*.gguf"))


def _style_for(name: str, chat_template: str | None) -> PromptStyle:
    variant = VARIANTS.get(name)
    if variant is not None:
        return CHAT if variant.prompt_style == "chat" else COMPLETION
    return CHAT if chat_template else COMPLETION


def _gguf_ref(path: Path) -> ModelRef:
    from models.gguf_file import read_gguf

    info = read_gguf(path)
    return ModelRef(info.name, "gguf", str(path), _style_for(info.name, info.chat_template))


def _named(name: str) -> Path | None:
    prefix = DEMO_FILE_PREFIX if name == DEMO else f"{name}-"
    found = [p for p in local_gguf_files() if p.name.startswith(prefix)]
    # Prefer the registry's default quantization, then the smallest file.
    preferred = [p for p in found if p.stem.endswith("q4_k_m")]
    return (preferred or sorted(found, key=lambda p: p.stat().st_size) or [None])[0]


def default_model_name() -> str | None:
    """XGEN_MODEL, else the inst model if pulled, else the demo if built, else None."""
    if os.environ.get("XGEN_MODEL"):
        return os.environ["XGEN_MODEL"]
    for name in (DEFAULT_VARIANT, *VARIANTS, DEMO):
        if _named(name) is not None:
            return name
    return None


class NoModel(XGenError):
    """No model at all on this machine: the user needs `xgen pull` or `xgen demo`."""


NO_MODEL = ("no model found: run `xgen pull xgen-7b-8k-inst` to download and convert XGen-7B "
            "(about 27 GB download, 4.2 GB result), or `xgen demo` for a tiny offline demo model")


def resolve_model(ref: str | None) -> ModelRef:
    ref = ref or default_model_name()
    if ref is None:
        raise NoModel(NO_MODEL)
    if ref.startswith(("http://", "https://")):
        return ModelRef(ref, "url", ref.rstrip("/"), CHAT)
    path = Path(ref).expanduser()
    if path.is_file():
        return _gguf_ref(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise XGenError(f"{path}: a model folder needs a config.json (an HF checkpoint)")
        return ModelRef(path.name, "hf", str(path), CHAT)
    if ref in VARIANTS or ref == DEMO:
        found = _named(ref)
        if found is None:
            how = "`xgen demo`" if ref == DEMO else f"`xgen pull {ref}`"
            raise XGenError(f"model {ref} is not in {models_dir()}; get it with {how}")
        return _gguf_ref(found)
    raise XGenError(f"unknown model {ref!r}: give a registry name ({', '.join(VARIANTS)}, demo), "
                    "a .gguf file, an HF checkpoint folder or a server URL")
