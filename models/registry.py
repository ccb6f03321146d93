"""What is known about each published XGen variant.

The names are what users type (`xgen pull xgen-7b-8k-inst`); everything else follows
from the registry entry, never from the spelling of a path.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.config import TRANSFORMER_CONFIGS, ModelArgs
from models.errors import XGenError

# The system line of the xgen-7b-8k-inst model card.
XGEN_INST_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass(frozen=True)
class Variant:
    name: str
    hub_id: str
    context_length: int
    licence: str
    prompt_style: str  # "chat" (### Human / ### Assistant) or "completion"
    default_quant: str
    shapes: str  # key into TRANSFORMER_CONFIGS

    @property
    def args(self) -> ModelArgs:
        return TRANSFORMER_CONFIGS[self.shapes]


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("xgen-7b-4k-base", "Salesforce/xgen-7b-4k-base", 4096, "Apache-2.0",
                "completion", "q4_k_m", "xgen-7b-4k"),
        Variant("xgen-7b-8k-base", "Salesforce/xgen-7b-8k-base", 8192, "Apache-2.0",
                "completion", "q4_k_m", "xgen-7b-8k"),
        Variant("xgen-7b-8k-inst", "Salesforce/xgen-7b-8k-inst", 8192,
                "research only (CC-BY-NC-4.0)", "chat", "q4_k_m", "xgen-7b-8k"),
    )
}

DEFAULT_VARIANT = "xgen-7b-8k-inst"


def get_variant(name: str) -> Variant:
    if name in VARIANTS:
        return VARIANTS[name]
    for variant in VARIANTS.values():
        if variant.hub_id.lower() == name.lower():
            return variant
    known = ", ".join(VARIANTS)
    raise XGenError(f"unknown model {name!r}; known models: {known}")


def variant_for_hub_id(hub_id: str) -> Variant | None:
    """The registry entry for a Hub id, if it is one of ours."""
    for variant in VARIANTS.values():
        if variant.hub_id.lower() == hub_id.lower():
            return variant
    return None

# A Jinja chat template for llama.cpp front ends (llama-server, LM Studio, Ollama imports),
# producing the same text as the model card's format.
XGEN_CHAT_TEMPLATE = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
    "{% else %}"
    '{% set system = "' + XGEN_INST_SYSTEM + '" %}{% set turns = messages %}'
    "{% endif %}"
    "{{ system }}\n\n"
    "{% for message in turns %}"
    "{% if message['role'] == 'user' %}### Human: {{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}### Assistant: {{ message['content'] }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:{% endif %}"
)
