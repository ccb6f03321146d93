"""Which model a `--model NAME|PATH|URL` means, which engine and prompt style it takes,
which model to use when none is given (`choose_model`), and opening it (`open_model`),
for the command line and the app alike.

Resolution never downloads: a registry name that is not in the models folder is an
error that says how to get it (`xgen pull NAME`).
"""

from __future__ import annotations

import os
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


def _no_usable_model() -> str:
    """NO_MODEL, unless the models folder holds .gguf entries that cannot be used: then it
    says which and why (an unreadable 4 GB model is not fixed by downloading 27 GB again)."""
    folder = models_dir()
    left_out = [(p.name, why) for p in sorted(folder.glob("*.gguf")) if (why := gguf_file_problem(p))]
    if not left_out:
        return NO_MODEL
    name, why = left_out[0]
    more = f" (and {len(left_out) - 1} more)" if len(left_out) > 1 else ""
    return (f"no usable model: {name} in {folder} is {why.lower() if why[0].isupper() else why}{more}; "
            "fix or remove it (`xgen models` says why each file is left out)")


def resolve_model(ref: str | None) -> ModelRef:
    ref = ref or default_model_name()
    if ref is None:
        raise NoModel(_no_usable_model())
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


@dataclass(frozen=True)
class ModelChoice:
    """The model to open: `ref` (None: the default model), and whether the user chose none."""

    ref: str | None
    implicit: bool  # no --model and no XGEN_MODEL: the demo taken this way says what it is


def choose_model(asked: str | None, session_model: str = "") -> ModelChoice:
    """The one rule for which model to use: the one asked for (--model); else the model a
    reopened session used, if that file or folder is still there (a URL always is); else
    the default (`default_model_name`). Either of the last two is implicit, unless
    XGEN_MODEL names the default."""
    implicit = asked is None and not os.environ.get("XGEN_MODEL")
    if asked is not None:
        return ModelChoice(asked, False)
    if session_model.startswith(("http://", "https://")) or (session_model and Path(session_model).exists()):
        return ModelChoice(session_model, implicit)
    return ModelChoice(None, implicit)


@dataclass
class LoadedModel:
    """An open engine with what the conversation needs to know about its model; as a
    context manager, it closes the engine on the way out, however that is."""

    name: str
    engine: "Engine"
    style: PromptStyle = CHAT
    ref: str | None = None  # what the user asked for (None: the default model)
    location: str = ""  # the resolved file, folder or URL, kept with sessions to reopen them
    note: str = ""  # to show once when it is used (the demo, taken without being asked for)

    @property
    def engine_name(self) -> str:
        return self.engine.name

    def __enter__(self) -> "LoadedModel":
        return self

    def __exit__(self, *exc) -> None:
        self.engine.close()


def is_demo(location: str) -> bool:
    return Path(location).name.startswith(DEMO_FILE_PREFIX)


def open_model(model_ref: str | None, engine_kind: str | None = None, n_ctx: int | None = None,
               threads: int | None = None, kv_cache: str | None = None, *,
               implicit: bool | None = None, remote: dict | None = None) -> LoadedModel:
    """Resolve `model_ref` (None: the default model) and open it with its engine.

    `implicit` (default: as `choose_model` says) tells that the user did not choose this
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
        implicit = choose_model(model_ref).implicit
    if implicit and is_demo(ref.location):
        notes.insert(0, DEMO_NOTE)
    return LoadedModel(ref.name, engine, ref.style, model_ref, ref.location, "; ".join(notes))
