"""Converting a source, whatever it is: output naming, Hub id or folder, streaming or not.

`xgen convert` and `xgen pull` are thin callers of `convert_source`; so is anything else
that wants a GGUF from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from converter.convert import ConversionResult, ProgressFn, convert
from converter.download import download, looks_like_hub_id
from converter.quant import DEFAULT_FILE_TYPE, get_file_type
from models.atomic import output_target
from models.errors import XGenError
from models.registry import Variant, get_variant, variant_for_hub_id


@dataclass(frozen=True)
class SourceResult:
    result: ConversionResult
    reference: Path | None  # the local checkpoint folder it came from (None: streamed from the Hub)
    streamed: bool


def output_path(src: str, file_type: str | None = None, variant: str | Variant | None = None) -> tuple[Path, str]:
    """Where `convert_source` writes by default, and the model name it records."""
    from models.paths import models_dir

    chosen = _variant(src, variant)
    ftype = get_file_type(file_type or (chosen.default_quant if chosen else DEFAULT_FILE_TYPE))
    if chosen:
        name = chosen.name
    elif looks_like_hub_id(src):
        name = src.split("/")[-1]
    else:
        name = Path(src).resolve().name
    return models_dir() / f"{name}-{ftype.name}.gguf", name


def _variant(src: str, variant: str | Variant | None) -> Variant | None:
    if isinstance(variant, Variant):
        return variant
    if variant:
        return get_variant(variant)
    return variant_for_hub_id(src) if looks_like_hub_id(src) else None


def convert_source(src: str | Path, out: Path | None = None, file_type: str | None = None, *,
                   variant: str | Variant | None = None, revision: str | None = None,
                   keep_source: bool = False, force: bool = False, threads: int | None = None,
                   progress: ProgressFn | None = None, notify: Callable[[str], None] | None = None,
                   measure_error: bool = False, **stream_options) -> SourceResult:
    """Convert a local checkpoint folder or a Hub id into a GGUF (default: the models folder).

    A Hub id streams its `.bin` shards by range requests (converter/pull.py) unless
    `keep_source` asks for the whole download into the HF cache first (as do repos that
    ship safetensors). `stream_options` go to `pull` (connections, chunk_bytes, budget, retry).
    """
    src = str(src)
    say = notify or (lambda line: None)
    chosen = _variant(src, variant)
    ftype = get_file_type(file_type or (chosen.default_quant if chosen else DEFAULT_FILE_TYPE))
    default_out, name = output_path(src, ftype.name, chosen)
    out = Path(out) if out else default_out
    output_target(out, force=force)  # a folder, a device, an existing file: refused before any work
    options = dict(force=force, threads=threads, variant=chosen, name=name, progress=progress, notify=notify,
                   measure_error=measure_error)
    if not looks_like_hub_id(src):
        if revision:
            raise XGenError("--revision applies to a Hub id, not a local folder")
        return SourceResult(convert(Path(src), out, ftype.name, **options), Path(src), streamed=False)

    from converter.hub import resolve
    from converter.pull import is_streamable, pull
    from models.tokenizer import load_xgen_encoding

    repo = resolve(src, revision)
    # A Hub id is a download the user asked for: the GPT-2 ranks may come along (tiktoken
    # fetches and caches them). A local folder never touches the network for them.
    load_xgen_encoding(allow_download=True)
    if keep_source or not is_streamable(repo):
        if not keep_source:
            say(f"{src} ships safetensors, which are not streamed: downloading them whole first")
        say(f"downloading {src} ({repo.commit[:12]}) into the Hugging Face cache")
        folder = download(src, revision=repo.commit)
        return SourceResult(convert(folder, out, ftype.name, **options), folder, streamed=False)
    say(f"streaming {src} ({repo.commit[:12]}) from the Hugging Face Hub; no copy of the shards is kept")
    return SourceResult(pull(repo, out, ftype.name, **options, **stream_options), None, streamed=True)
