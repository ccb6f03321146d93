"""Click options shared by the commands that open a model (and by `xgen` alone)."""

from __future__ import annotations

import math
from collections.abc import Callable

import click
from click.core import ParameterSource

from models.errors import XGenError

model_option = click.option("-m", "--model", "model_ref", metavar="NAME|PATH|URL",
                            help="Registry name, demo, a .gguf file, an HF folder or a server URL "
                                 "(default: the session's model, else the pulled inst model, else the demo).")
engine_option = click.option("-e", "--engine", "engine_kind", type=click.Choice(["llama", "torch", "remote"]),
                             help="How to run it (default: llama for .gguf, torch for an HF folder, "
                                  "remote for a URL).")
ctx_option = click.option("--ctx", "n_ctx", type=click.IntRange(256, 1 << 20),
                          help="Context size in tokens (default: the model's own, 8192 for XGen-8K).")
threads_option = click.option("--threads", type=click.IntRange(1, 256), help="CPU threads for llama.cpp.")
kv_cache_option = click.option("--kv-cache", "kv_cache", type=click.Choice(["f16", "q8_0"]),
                               envvar="XGEN_KV_CACHE",
                               help="llama.cpp KV cache type (default f16; env XGEN_KV_CACHE). q8_0 halves it: "
                                    "a 7B model's full 8K context then fits in 8 GB, with slower prompts on CPU.")
session_option = click.option("-s", "--session", "session_id",
                              help="Continue a saved session (an id or its start, see `xgen sessions list`).")

def model_options(command: Callable) -> Callable:
    """--model, --engine, --ctx, --threads and --kv-cache."""
    for option in reversed((model_option, engine_option, ctx_option, threads_option, kv_cache_option)):
        command = option(command)
    return command


class Seconds(click.ParamType):
    """A finite number of seconds above 0. Bad values are one line (an XGenError), naming
    the option or the environment variable they came from."""

    name = "seconds"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds > 0):
            from_env = ctx is not None and param is not None and \
                ctx.get_parameter_source(param.name) == ParameterSource.ENVIRONMENT
            source = param.envvar if from_env else (param.opts[0] if param is not None else "the value")
            raise XGenError(f"{source} must be a number of seconds above 0 (and finite), not {str(value)[:40]!r}")
        return seconds


timeout_option = click.option("--timeout", "remote_timeout", type=Seconds(),
                              envvar="XGEN_REMOTE_TIMEOUT", metavar="SECONDS",
                              help="Remote engine: give up when the server stays silent this long, before its "
                                   "first token or between tokens (default 120; env XGEN_REMOTE_TIMEOUT). "
                                   "The wait is shown as it goes.")


def remote_options(timeout: float | None) -> dict:
    """The remote engine's options from the command line: its timeout and a waiting line."""
    from assistant.cli.output import wait_printer

    return {"timeout": timeout, "on_wait": wait_printer()}
