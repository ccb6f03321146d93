"""What the app runs on: a loaded model and the factory that loads one.

The app never opens a model itself: it calls an engine factory in a worker thread
(`factory(model_ref)`, where None means the default model). The command line passes a
`ModelLoader` (resolve_model + open_engine with the command's options); tests pass a
function returning a FakeEngine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from assistant.engines.base import Engine
from assistant.modelref import NoModel
from assistant.prompt import CHAT, PromptStyle
from models.errors import XGenError


@dataclass
class LoadedModel:
    name: str
    engine: Engine
    style: PromptStyle = CHAT
    ref: str | None = None  # what the user asked for (None: the default model)

    @property
    def engine_name(self) -> str:
        return self.engine.name


EngineFactory = Callable[[str | None], "Engine | LoadedModel"]


def as_loaded(result: Engine | LoadedModel, ref: str | None) -> LoadedModel:
    """A factory may return a bare Engine (tests do); name it after its model."""
    if isinstance(result, LoadedModel):
        if result.ref is None:
            result.ref = ref
        return result
    return LoadedModel(result.model_name or result.name, result, CHAT, ref)


def is_no_model(exc: XGenError) -> bool:
    return isinstance(exc, NoModel)


class ModelLoader:
    """The command line's engine factory: `--engine`, `--ctx`, `--threads` and `--kv-cache` apply to
    the model given with `--model` (or the default one); a model picked later in the app
    gets its own default engine."""

    def __init__(self, model: str | None = None, engine_kind: str | None = None, n_ctx: int | None = None,
                 threads: int | None = None, kv_cache: str | None = None):
        self.model = model
        self.engine_kind = engine_kind
        self.n_ctx = n_ctx
        self.threads = threads
        self.kv_cache = kv_cache

    def __call__(self, ref: str | None) -> LoadedModel:
        from assistant.cli_assist import open_model

        same = ref == self.model
        model_ref, engine = open_model(ref, self.engine_kind if same else None, self.n_ctx, self.threads,
                                       self.kv_cache)
        return LoadedModel(model_ref.name, engine, model_ref.style, ref)


def local_models() -> list[tuple[str, str]]:
    """(ref, description) of the models on this machine, for the model picker."""
    from assistant.modelref import local_gguf_files

    found = []
    for path in local_gguf_files():
        size = path.stat().st_size / 2**30
        found.append((str(path), f"{path.name}  ({size:.2f} GiB)" if size >= 0.1 else
                      f"{path.name}  ({size * 1024:.0f} MiB)"))
    return found
