"""What the app runs on: the engine factory it is given, and telling a missing model apart.

The app never opens a model itself: it calls an engine factory in a worker thread
(`factory(model_ref)`, where None means the default model). The command line passes the
core's `ModelLoader` (assistant/modelref.py); tests pass their own function.
"""

from __future__ import annotations

from assistant.modelref import EngineFactory, LoadedModel, ModelLoader, NoModel, as_loaded, local_models
from models.errors import XGenError

__all__ = ["EngineFactory", "LoadedModel", "ModelLoader", "as_loaded", "is_no_model", "local_models"]


def is_no_model(exc: XGenError) -> bool:
    return isinstance(exc, NoModel)
