"""Model arguments: one small dataclass, read from a Hugging Face `config.json`.

XGen-7B is a plain `LlamaForCausalLM`; anything else is rejected with an error that
names the field that does not fit, so a wrong checkpoint never reaches the converter.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from models.errors import XGenError


@dataclass(frozen=True)
class ModelArgs:
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 32
    intermediate_size: int = 11008
    vocab_size: int = 51200
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_seq_len: int = 8192
    bos_token_id: int = 50256
    eos_token_id: int = 50256
    tie_word_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_hf_config(self) -> dict:
        """The `config.json` a Hugging Face XGen checkpoint with these shapes carries."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_seq_len,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": 0,
            "hidden_act": "silu",
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": "float32",
        }

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_hf_config(cls, cfg: dict, source: str = "config.json") -> "ModelArgs":
        """Validate an HF config and read the fields XGen uses."""

        def bad(field: str, why: str) -> XGenError:
            return XGenError(f"{source}: {field} {why}; this is not an XGen/Llama causal LM")

        archs = cfg.get("architectures") or []
        if archs != ["LlamaForCausalLM"]:
            raise bad("architectures", f"is {archs!r}, expected ['LlamaForCausalLM']")
        if cfg.get("model_type", "llama") != "llama":
            raise bad("model_type", f"is {cfg.get('model_type')!r}, expected 'llama'")
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise bad("hidden_act", f"is {act!r}, expected 'silu'")
        if cfg.get("rope_scaling"):
            raise bad("rope_scaling", f"is {cfg['rope_scaling']!r}, XGen uses plain RoPE")

        def integer(field: str, default=None) -> int:
            value = cfg.get(field, default)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(field, f"is {value!r}, expected a positive integer")
            return value

        dim = integer("hidden_size")
        n_heads = integer("num_attention_heads")
        n_kv_heads = integer("num_key_value_heads", n_heads)
        if dim % n_heads:
            raise bad("hidden_size", f"({dim}) is not a multiple of num_attention_heads ({n_heads})")
        if n_heads % n_kv_heads:
            raise bad("num_key_value_heads", f"({n_kv_heads}) does not divide num_attention_heads")
        if (dim // n_heads) % 2:
            raise bad("hidden_size", "gives an odd head size, which RoPE cannot rotate")
        eps = cfg.get("rms_norm_eps", 1e-6)
        theta = cfg.get("rope_theta", 10000.0)
        for field, value in (("rms_norm_eps", eps), ("rope_theta", theta)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise bad(field, f"is {value!r}, expected a positive number")
        return cls(
            dim=dim,
            n_layers=integer("num_hidden_layers"),
            n_heads=n_heads,
            n_kv_heads=n_kv_heads,
            intermediate_size=integer("intermediate_size"),
            vocab_size=integer("vocab_size"),
            norm_eps=float(eps),
            rope_theta=float(theta),
            # transformers' LlamaConfig reads a missing field as 2048.
            max_seq_len=integer("max_position_embeddings", 2048),
            bos_token_id=int(cfg.get("bos_token_id", 50256)),
            eos_token_id=_first(cfg.get("eos_token_id", 50256)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ModelArgs":
        path = Path(folder) / "config.json"
        if not Path(folder).is_dir():
            raise XGenError(f"{folder}: no such folder")
        if not path.is_file():
            raise XGenError(f"{folder}: no config.json; is this a Hugging Face checkpoint folder?")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise XGenError(f"{path}: cannot read it as JSON ({exc})") from None
        if not isinstance(cfg, dict):
            raise XGenError(f"{path}: expected a JSON object")
        return cls.from_hf_config(cfg, source=str(path))


def _first(value) -> int:
    # Some configs give a list of end tokens.
    return int(value[0] if isinstance(value, list) else value)


# Shapes of the published models, and a tiny one for demos and tests.
TRANSFORMER_CONFIGS: dict[str, ModelArgs] = {
    "xgen-7b-4k": ModelArgs(max_seq_len=4096),
    "xgen-7b-8k": ModelArgs(max_seq_len=8192),
    # Multiples of 256 so every K-quant applies; 6 layers so Q4_K_M's per-layer
    # policy picks out layers 2 and 5.
    "tiny": ModelArgs(dim=256, n_layers=6, n_heads=4, n_kv_heads=4, intermediate_size=512,
                      max_seq_len=512),
    # XGen's full 8K context at a size that prefills thousands of tokens in seconds (benchmarks).
    "small": ModelArgs(dim=512, n_layers=4, n_heads=8, n_kv_heads=8, intermediate_size=1536,
                       max_seq_len=8192),
}
