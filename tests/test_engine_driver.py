"""One generation loop for every engine (assistant/engines/driver.py).

The same scenarios (end-of-text, max_tokens, a full context, a stop string, a stop
request before and during the reply) run through each engine kind: the test double,
llama.cpp on a GGUF, PyTorch on the HF folder, and the remote engine against the
OpenAI double. All four are made to produce the same token stream: the tiny model is
doctored so that its greedy reply ends with end-of-text after a few tokens, and the two
doubles replay that reply, computed independently by full forwards of the PyTorch
reference. Finish reasons, texts and counts must then be identical.
"""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import replace

import pytest
import torch

from assistant.engines.base import SamplingSettings
from models.tokenizer import XGenTokenizer
from tests.fake_engine import FakeEngine
from bench.openai_double import OpenAIDouble
from tests.reference import EOS, masked_greedy, stop_after_pieces

KINDS = ["fake", "llama", "torch", "remote"]
ROOMY = 160  # a context with room for the whole reply
PROMPT = ("A chat between a curious human and an artificial intelligence assistant.\n\n"
          "### Human: What is a lighthouse?\n###")


@pytest.fixture(scope="module")
def prompt() -> list[int]:
    return XGenTokenizer(allow_download=False).encode(PROMPT)


@pytest.fixture(scope="module")
def ending(tmp_path_factory, tiny_checkpoint, tiny_args, torch_reference, prompt):
    """(checkpoint, GGUF, reply ids): the tiny model with end-of-text's output row a little
    above that of a token its greedy reply reaches after a few steps, so that the reply
    ends there with end-of-text; the reply is the reference's, up to end-of-text."""
    from converter.convert import convert
    from models.checkpoint import CheckpointReader, find_checkpoint
    from models.hf_weights import load_hf_weights
    from models.xgen import build_model

    plain = masked_greedy(torch_reference, prompt, 12)
    k = next(i for i in range(5, 12) if plain[i] not in plain[:i])
    folder = tmp_path_factory.mktemp("ending") / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    shard = folder / index["weight_map"]["lm_head.weight"]
    state = torch.load(shard, weights_only=True)
    head = state["lm_head.weight"].clone()
    head[EOS] = head[plain[k]] * 1.05  # beats that token wherever it would win (its logit then > 0)
    state["lm_head.weight"] = head
    torch.save(state, shard)

    model = build_model(tiny_args)
    load_hf_weights(model, CheckpointReader(find_checkpoint(folder)))
    reply = masked_greedy(model.eval(), prompt, 40)
    assert 4 <= len(reply) < 40  # it ends with end-of-text after a few tokens
    gguf = convert(folder, tmp_path_factory.mktemp("ending-gguf") / "ending.gguf", "f32").path
    return folder, gguf, reply


@pytest.fixture(scope="module")
def server():
    with OpenAIDouble() as double:
        yield double


@pytest.fixture(scope="module")
def engines(ending, server):
    """open(kind, n_ctx) -> an engine of that kind, ready to give the reference reply once."""
    from assistant.engines.llama import LlamaEngine
    from assistant.engines.remote import RemoteEngine
    from assistant.engines.torch_engine import TorchEngine

    folder, gguf, reply = ending
    opened: dict = {}

    def open_kind(kind: str, n_ctx: int):
        if kind == "fake":
            return FakeEngine([reply + [EOS]], n_ctx=n_ctx)
        if kind == "remote":
            server.n_ctx = n_ctx
            server.replies.clear()
            server.replies.append(reply + [EOS])
            engine = RemoteEngine(server.url)
            opened[(kind, len(opened))] = engine
            return engine
        if (kind, n_ctx) not in opened:
            opened[(kind, n_ctx)] = (LlamaEngine(gguf, n_ctx=n_ctx, n_batch=16) if kind == "llama"
                                     else TorchEngine(folder, n_ctx=n_ctx))
        return opened[(kind, n_ctx)]

    yield open_kind
    for engine in opened.values():
        engine.close()


def text_of(ids: list[int]) -> str:
    return XGenTokenizer(allow_download=False).decode(ids)


def run_everywhere(engines, scenario):
    """{kind: (finish, text, generated, shown)} for one scenario(engine) -> (Completion, shown)."""
    results = {}
    for kind in KINDS:
        done, shown = scenario(kind)
        results[kind] = (done.stats.finish, done.text, done.stats.generated, shown)
    return results


def assert_same(results: dict, expected: tuple) -> None:
    for kind, got in results.items():
        assert got == expected, (kind, results)


def test_end_of_text(engines, prompt, ending):
    reply = ending[2]

    def scenario(kind):
        shown: list[str] = []
        done = engines(kind, ROOMY).generate(prompt, SamplingSettings.greedy(40), on_text=shown.append)
        if kind != "remote":  # the server streams text; its ids are the text's own tokens
            assert done.token_ids == reply
        return done, "".join(shown)

    assert_same(run_everywhere(engines, scenario), ("eos", text_of(reply), len(reply), text_of(reply)))


def test_max_tokens(engines, prompt, ending):
    reply = ending[2]

    def scenario(kind):
        done = engines(kind, ROOMY).generate(prompt, SamplingSettings.greedy(3))
        return done, None

    assert_same(run_everywhere(engines, scenario), ("length", text_of(reply[:3]), 3, None))


def test_a_full_context(engines, prompt, ending):
    reply = ending[2]

    def scenario(kind):
        done = engines(kind, len(prompt) + 3).generate(prompt, SamplingSettings.greedy(40))
        return done, None

    assert_same(run_everywhere(engines, scenario), ("context", text_of(reply[:3]), 3, None))


def test_a_stop_string(engines, prompt, ending):
    text = text_of(ending[2])
    marker = text[len(text) // 2: len(text) // 2 + 3]
    assert marker.strip() and text.index(marker) > 0
    before = text[: text.index(marker)]
    settings = replace(SamplingSettings.greedy(40), stop_strings=(marker,))
    generated = {}

    def scenario(kind):
        shown: list[str] = []
        done = engines(kind, ROOMY).generate(prompt, settings, on_text=shown.append)
        generated[kind] = done.stats.generated
        return done, "".join(shown)

    results = run_everywhere(engines, scenario)
    assert_same(results, ("eos", before, generated["fake"], before))
    assert generated["fake"] < len(ending[2])  # it ended there, not at end-of-text


def test_a_stop_request_during_the_reply(engines, prompt, ending):
    texts = {}

    def scenario(kind):
        stop, pieces, on_text = stop_after_pieces(2)
        done = engines(kind, ROOMY).generate(prompt, SamplingSettings.greedy(40), stop=stop, on_text=on_text)
        texts[kind] = "".join(pieces)
        return done, None

    results = run_everywhere(engines, scenario)
    assert_same(results, ("stopped", texts["fake"], results["fake"][2], None))
    assert text_of(ending[2]).startswith(texts["fake"]) and 2 <= results["fake"][2] < len(ending[2])


def test_a_stop_request_before_the_reply(engines, prompt, server):
    stop = threading.Event()
    stop.set()
    requests = len(server.requests)

    def scenario(kind):
        done = engines(kind, ROOMY).generate(prompt, SamplingSettings.greedy(40), stop=stop)
        assert done.stats.prompt_evaluated == 0 and done.token_ids == []
        return done, None

    assert_same(run_everywhere(engines, scenario), ("stopped", "", 0, None))
    assert len(server.requests) == requests  # nothing was sent
