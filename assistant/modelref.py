"""Which model a `--model NAME|PATH|URL` means, which engine and prompt style it takes,
and opening it (`open_model`), for the command line and the app alike.

Resolution never downloads: a registry name that is not in the models folder is an
error that says how to get it (`xgen pull NAME`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.prompt import CHAT, COMPLETION, PromptStyle
from models.errors import XGenError
from models.paths import models_dir
from models.registry import DEFAULT_VARIANT, VARIANTS

if TYPE_CHECKING:
    from assistant.engines.base import Engine

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
    """The model files in the models folder: `*.gguf` regular files (or links to one) that
    start like a GGUF; folders, dangling links, FIFOs and other files are left out."""
    return [p for p in sorted(models_dir().glob("*.gguf")) if gguf_file_problem(p) is None]


def gguf_file_problem(path: Path) -> str | None:
    """Why `path` is not a model file (a quick look: kind of file, then its magic), or None."""
    import stat

    try:
        st = path.stat()
    except OSError as exc:
        return "a broken symbolic link" if path.is_symlink() else (exc.strerror or str(exc))
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None if magic == b"GGUF" else "not a GGUF file"


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


DEMO_NOTE = ("using the tiny demo model, whose weights are random: its text is nonsense. For real answers run "
             "`xgen pull xgen-7b-8k-inst` (about 27 GB download, 4.2 GB result)")


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


@dataclass
class LoadedModel:
    """An open engine with what the conversation needs to know about its model."""

    name: str
    engine: "Engine"
    style: PromptStyle = CHAT
    ref: str | None = None  # what the user asked for (None: the default model)
    location: str = ""  # the resolved file, folder or URL, kept with sessions to reopen them
    note: str = ""  # to show once when it is used (the demo, taken without being asked for)

    @property
    def engine_name(self) -> str:
        return self.engine.name


def is_demo(location: str) -> bool:
    return Path(location).name.startswith(DEMO_FILE_PREFIX)


def open_model(model_ref: str | None, engine_kind: str | None = None, n_ctx: int | None = None,
               threads: int | None = None, kv_cache: str | None = None, *,
               implicit: bool | None = None, remote: dict | None = None) -> LoadedModel:
    """Resolve `model_ref` (None: the default model) and open it with its engine.

    `implicit` (default: no model_ref and no XGEN_MODEL) says the user did not choose this
    model; the demo taken that way carries a note saying what it is. `remote`: options
    for the remote engine only (timeout, on_wait)."""
    from assistant.engines import open_engine

    from assistant.fit import check_torch_fits, plan_gguf

    ref = resolve_model(model_ref)
    kind = engine_kind or ref.default_engine
    options: dict = {}
    notes: list[str] = []
    if n_ctx:
        options["n_ctx"] = n_ctx
    if threads and kind == "llama":
        options["n_threads"] = threads
    if kind == "llama" and ref.kind == "gguf":  # fits before it loads (the other engines keep their caches)
        plan = plan_gguf(ref.location, n_ctx or 0, kv_cache)
        options["n_ctx"], options["kv_type"] = plan.n_ctx, plan.kv_type
        notes += [plan.note] if plan.note else []
    if kind == "torch" and ref.kind == "hf":
        from models.inference import pick_device_dtype

        check_torch_fits(ref.location, pick_device_dtype(None, None)[0].type)
    if remote and kind == "remote":
        options.update({k: v for k, v in remote.items() if v is not None})
    engine = open_engine(kind, ref.location, **options)
    if implicit is None:
        implicit = model_ref is None and not os.environ.get("XGEN_MODEL")
    if implicit and is_demo(ref.location):
        notes.insert(0, DEMO_NOTE)
    return LoadedModel(ref.name, engine, ref.style, model_ref, ref.location, "; ".join(notes))


EngineFactory = Callable[[str | None], "Engine | LoadedModel"]


class ModelLoader:
    """An engine factory for the app: `engine_kind`, `n_ctx`, `threads` and `kv_cache` apply
    to the model first asked for (or the default one); a model picked later gets its own
    default engine."""

    def __init__(self, model: str | None = None, engine_kind: str | None = None, n_ctx: int | None = None,
                 threads: int | None = None, kv_cache: str | None = None):
        self.model = model
        self.engine_kind = engine_kind
        self.n_ctx = n_ctx
        self.threads = threads
        self.kv_cache = kv_cache
        self._first = True

    def __call__(self, ref: str | None) -> LoadedModel:
        # The first load may be a reopened session's model rather than `model`.
        first, self._first = self._first, False
        same = ref == self.model or first
        implicit = first and self.model is None and not os.environ.get("XGEN_MODEL")
        return open_model(ref, self.engine_kind if same else None, self.n_ctx, self.threads, self.kv_cache,
                          implicit=implicit)


def as_loaded(result: "Engine | LoadedModel", ref: str | None) -> LoadedModel:
    """A factory may return a bare Engine (tests do); name it after its model."""
    if isinstance(result, LoadedModel):
        if result.ref is None:
            result.ref = ref
        return result
    return LoadedModel(result.model_name or result.name, result, CHAT, ref, ref or "")


def local_models() -> list[tuple[str, str]]:
    """(ref, description) of the models on this machine, for a model picker."""
    found = []
    for path in local_gguf_files():
        size = path.stat().st_size / 2**30
        found.append((str(path), f"{path.name}  ({size:.2f} GiB)" if size >= 0.1 else
                      f"{path.name}  ({size * 1024:.0f} MiB)"))
    return found
