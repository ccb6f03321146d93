"""The peer for the conversion benchmark: llama.cpp's own two-pass pipeline.

Pass 1 is llama.cpp's `convert_hf_to_gguf.py --outtype f16` (HF checkpoint -> F16 GGUF),
pass 2 is `llama_cpp.llama_model_quantize` with ftype 15 (MOSTLY_Q4_K_M), the same code
as the `llama-quantize` tool, run in its own process so its memory is measured.

Where the peer comes from (nothing here is committed; everything lives in bench/.cache):

- `convert_hf_to_gguf.py`, its `conversion/` package and `gguf-py/` are in
  llama-cpp-python's source distribution at `vendor/llama.cpp/`. `ensure_sources()`
  fetches it with `pip download --no-deps --no-binary :all: llama-cpp-python==<installed
  version>` and untars it; only full benchmark runs may do that (never --quick or tests).
- the converter reads a SentencePiece `tokenizer.model` for a LlamaForCausalLM (XGen's
  own tokenizer is remote code it cannot run). `sentencepiece` is installed with
  `pip install --target bench/.cache/peer-site` (not into the project venv) and a
  400-piece BPE model is trained on the repo's own Markdown text; convert_hf_to_gguf pads
  the token list to config.json's vocab_size (51200) with `[PADn]` entries, so the GGUF
  vocabulary has XGen's size and the tensors the real shapes. The tokenizer only affects
  the metadata (a few MB); the tensor work, which is what is timed, is identical.
- the peer gets its own checkpoint folder: symlinks to our shards, index and config.json,
  plus tokenizer.model and a plain tokenizer_config.json. No weight is copied.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
SDIST_DIR = CACHE / "sdist"
PEER_SITE = CACHE / "peer-site"
TOKENIZER_DIR = CACHE / "peer-tokenizer"
REPO = Path(__file__).resolve().parents[1]

QUANTIZE_SCRIPT = """
import ctypes, sys, llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = int(sys.argv[3])
params.nthread = int(sys.argv[4])
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(params))
sys.exit(rc)
"""


def llama_cpp_version() -> str:
    from importlib.metadata import version

    return version("llama_cpp_python")


def source_root() -> Path:
    return SDIST_DIR / f"llama_cpp_python-{llama_cpp_version()}" / "vendor" / "llama.cpp"


def convert_script() -> Path:
    return source_root() / "convert_hf_to_gguf.py"


def available() -> bool:
    """True when the peer can run with no network (sources and sentencepiece in the cache)."""
    return convert_script().is_file() and (PEER_SITE / "sentencepiece").is_dir()


def ensure_sources(allow_download: bool) -> Path:
    """The path of convert_hf_to_gguf.py, downloading llama-cpp-python's sdist if allowed."""
    script = convert_script()
    if script.is_file() and (PEER_SITE / "sentencepiece").is_dir():
        return script
    if not allow_download:
        raise RuntimeError(f"{script} or {PEER_SITE}/sentencepiece is missing; run the full benchmark once")
    pip = [sys.executable, "-m", "pip"]
    if not script.is_file():
        version = llama_cpp_version()
        SDIST_DIR.mkdir(parents=True, exist_ok=True)
        tarball = SDIST_DIR / f"llama_cpp_python-{version}.tar.gz"
        if not tarball.is_file():
            subprocess.run(pip + ["download", "--no-deps", "--no-binary", ":all:",
                                  f"llama-cpp-python=={version}", "-d", str(SDIST_DIR)], check=True)
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name + "/"]
            tar.extractall(SDIST_DIR, members=members, filter="data")
    if not (PEER_SITE / "sentencepiece").is_dir():
        subprocess.run(pip + ["install", "--quiet", "--target", str(PEER_SITE), "sentencepiece"], check=True)
    return script


def tokenizer_model() -> Path:
    """A small SentencePiece BPE model trained on the repo's Markdown (cached)."""
    out = TOKENIZER_DIR / "tokenizer.model"
    if out.is_file():
        return out
    TOKENIZER_DIR.mkdir(parents=True, exist_ok=True)
    corpus = TOKENIZER_DIR / "corpus.txt"
    texts = [p.read_text(errors="replace") for p in sorted(REPO.glob("*.md")) + sorted((REPO.parent / "shared").glob("*.md"))]
    corpus.write_text("\n".join(texts))
    code = (
        "import sys, sentencepiece as spm\n"
        "spm.SentencePieceTrainer.train(input=sys.argv[1], model_prefix=sys.argv[2], vocab_size=400,"
        " model_type='bpe', byte_fallback=True, character_coverage=1.0, minloglevel=2)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(corpus), str(TOKENIZER_DIR / "tokenizer")],
                   check=True, env=peer_env(), stdout=subprocess.DEVNULL)
    return out


def peer_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PEER_SITE), env.get("PYTHONPATH", "")) if p)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("NO_LOCAL_GGUF", None)  # the script must use its own gguf-py, not the venv's gguf
    return env


def peer_checkpoint(src: Path, dest: Path) -> Path:
    """A folder that is `src` (symlinked) plus a stock Llama SentencePiece tokenizer."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.name.startswith("tokenizer"):
            continue
        link = dest / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    model = tokenizer_model()
    (dest / "tokenizer.model").write_bytes(model.read_bytes())
    (dest / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": False, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2))
    return dest


def convert_cmd(src: Path, out: Path) -> list[str]:
    return [sys.executable, str(convert_script()), str(src), "--outtype", "f16", "--outfile", str(out)]


def quantize_cmd(src: Path, out: Path, threads: int) -> list[str]:
    return [sys.executable, "-c", QUANTIZE_SCRIPT, str(src), str(out), "15", str(threads)]
