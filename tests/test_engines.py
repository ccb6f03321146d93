"""The engines on the tiny random XGen model: llama.cpp (GGUF), PyTorch (HF folder) and a
real OpenAI-compatible server (llama-cpp-python's) through RemoteEngine.

References: `models.inference.greedy_generate` on the fp32 torch model, and fresh engines
(nothing cached) for prefix-reuse and stop tests.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from assistant.engines import open_engine
from assistant.engines.base import ContextOverflow, SamplingSettings
from assistant.engines.llama import LlamaEngine
from assistant.engines.sampling import sample_next
from models.errors import XGenError
from models.tokenizer import N_VOCAB, XGenTokenizer
from models.inference import greedy_generate
from tests.reference import masked_greedy, stop_after_pieces

EOS = 50256
LLAMA_BATCH = 16
TORCH_CHUNK = 16
N_CTX = 160  # small, so that filling the context stays cheap

TEXT = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the human's questions.\n\n### Human: ")
STORY = ("The lighthouse keeper climbed the spiral stairs every evening, counting the steps aloud, "
         "checking the lamp, the lens and the logbook before the fog rolled in from the harbour. ")


@pytest.fixture(scope="module")
def tok():
    return XGenTokenizer(allow_download=False)


def ids_of(tok, text: str) -> list[int]:
    return tok.encode(text)


@pytest.fixture(scope="module")
def llama_engine(converted):
    engine = LlamaEngine(converted("f32"), n_batch=LLAMA_BATCH, n_ctx=N_CTX)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def torch_engine(tiny_checkpoint):
    from assistant.engines.torch_engine import TorchEngine

    engine = TorchEngine(tiny_checkpoint, n_ctx=N_CTX)
    engine.prefill_chunk = TORCH_CHUNK
    yield engine
    engine.close()


@pytest.fixture(params=["llama", "torch"])
def engine(request):
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture
def reference(request, converted, torch_reference):
    """reference(prompt, n) -> greedy ids of a fresh engine of the same kind as `engine`."""
    kind = request.node.callspec.params["engine"]

    def run(prompt: list[int], n: int) -> list[int]:
        if kind == "llama":
            fresh = LlamaEngine(converted("f32"), n_batch=LLAMA_BATCH, n_ctx=N_CTX)
            try:
                return fresh.generate(prompt, SamplingSettings.greedy(n)).token_ids
            finally:
                fresh.close()
        return masked_greedy(torch_reference, prompt, n)

    return run


def cached_ids(engine) -> list[int]:
    return engine.cached_ids if engine.name == "llama" else list(engine._cached)


# --------------------------------------------------------------------------------------
# Greedy agreement
# --------------------------------------------------------------------------------------


def test_llama_and_torch_engines_match_greedy_generate(llama_engine, torch_engine, torch_reference, tok):
    prompt = ids_of(tok, TEXT + "What is a lighthouse?\n###")
    expected = greedy_generate(torch_reference, prompt, 20, eos_id=EOS)
    assert len(expected) == 20 and EOS not in expected and max(expected) < N_VOCAB
    assert masked_greedy(torch_reference, prompt, 20) == expected
    pieces: list[str] = []
    a = llama_engine.generate(prompt, SamplingSettings.greedy(20), on_text=pieces.append)
    b = torch_engine.generate(prompt, SamplingSettings.greedy(20))
    assert a.token_ids == expected
    assert b.token_ids == expected
    assert a.text == b.text == tok.decode(expected) == "".join(pieces)
    for result in (a, b):
        assert result.stats.finish == "length"
        assert result.stats.generated == 20
        assert result.stats.prompt_tokens == len(prompt)
        assert 0 < result.stats.seconds_to_first_token <= result.stats.seconds


def test_tokenize_and_token_bytes_agree(llama_engine, torch_engine, tok):
    text = "x" + " " * 31 + "-" * 64 + "\t\t<|endoftext|> caf\u00e9 \u65e5\u672c"
    for engine in (llama_engine, torch_engine):
        ids = engine.tokenize(text)
        assert ids == tok.encode(text)
        assert EOS not in ids  # special-token text is plain text unless asked
        assert engine.token_bytes(ids) == text.encode()  # includes a 64-byte token
        assert engine.tokenize("<|endoftext|>", special=True) == [EOS]
        assert engine.token_bytes([EOS, 50300, 50400]) == b""  # control and padding ids: no text
    assert llama_engine.model_name and llama_engine.n_ctx == torch_engine.n_ctx == N_CTX


# --------------------------------------------------------------------------------------
# Prefix reuse
# --------------------------------------------------------------------------------------


def test_prefix_reuse_evaluates_only_new_tokens(engine, reference, tok):
    first = ids_of(tok, TEXT + "Tell me about lighthouses.\n###")
    extra = ids_of(tok, " Assistant: They guide ships.\n### Human: And fog?\n###")
    one = engine.generate(first, SamplingSettings.greedy(8))
    assert one.token_ids == reference(first, 8)

    second = first + extra  # extends the first prompt (not its reply)
    two = engine.generate(second, SamplingSettings.greedy(8))
    assert two.stats.prompt_evaluated == len(extra)
    assert two.token_ids == reference(second, 8)

    # A follow-up turn: prompt + reply + new text. The reply's last token was sampled but
    # never fed back, so it is evaluated with the new tokens.
    turn = ids_of(tok, "\n### Human: Thanks!\n###")
    third = second + two.token_ids + turn
    three = engine.generate(third, SamplingSettings.greedy(8))
    assert three.stats.prompt_evaluated == len(turn) + 1
    assert three.token_ids == reference(third, 8)

    # The same prompt again: only its last token is recomputed, for the logits.
    again = engine.generate(third, SamplingSettings.greedy(8))
    assert again.stats.prompt_evaluated == 1
    assert again.token_ids == three.token_ids

    # A prompt that diverges early: the stale tail is dropped, the result is still exact.
    other = first[:5] + ids_of(tok, " something else entirely\n###")
    four = engine.generate(other, SamplingSettings.greedy(8))
    assert four.stats.prompt_evaluated == len(other) - 5
    assert four.token_ids == reference(other, 8)


def test_prefill_progress_counts_the_batches_evaluated(engine, tok):
    """on_prefill reports the prompt read so far after each batch: the steps add up to
    the tokens evaluated (the cached prefix costs nothing and is not reported)."""
    engine.generate(ids_of(tok, "Something unrelated.\n###"), SamplingSettings.greedy(1))
    prompt = ids_of(tok, TEXT + "Tell me about lighthouses and fog.\n###")
    for extra in ([], ids_of(tok, " Assistant: They guide ships.\n###")):
        seen: list[tuple[int, int]] = []
        done = engine.generate(prompt + extra, SamplingSettings.greedy(2), on_prefill=lambda *a: seen.append(a))
        n = len(prompt) + len(extra)
        start = n - done.stats.prompt_evaluated
        steps = [b - a for a, b in zip([start] + [d for d, _ in seen], [d for d, _ in seen])]
        assert seen[-1] == (n, n) and all(total == n for _, total in seen)
        assert sum(steps) == done.stats.prompt_evaluated and 0 < max(steps) <= 16  # one batch at most
        assert len(seen) == -(-done.stats.prompt_evaluated // 16)
        prompt = prompt + done.token_ids  # the next round extends this one: only its new tokens


# --------------------------------------------------------------------------------------
# Stop requests
# --------------------------------------------------------------------------------------


def test_stop_from_on_text_keeps_text(engine, reference, tok):
    prompt = ids_of(tok, TEXT + "Count to ten.\n###")
    stop, pieces, on_text = stop_after_pieces(3)
    result = engine.generate(prompt, SamplingSettings.greedy(20), stop=stop, on_text=on_text)
    assert result.stats.finish == "stopped"
    assert result.stats.generated == 3 == len(result.token_ids)
    assert result.token_ids == reference(prompt, 3)
    assert result.text == "".join(pieces) == tok.decode(result.token_ids)


def long_prompt(tok, tag: str) -> list[int]:
    ids = ids_of(tok, f"{tag} " + STORY * 3 + "\n###")
    assert 5 * LLAMA_BATCH < len(ids) < N_CTX - 20
    return ids


def test_stop_before_a_long_prompt_returns_at_once(engine, reference, tok):
    prompt = long_prompt(tok, "Before")
    stop = threading.Event()
    stop.set()
    started = time.perf_counter()
    result = engine.generate(prompt, SamplingSettings.greedy(10), stop=stop)
    assert time.perf_counter() - started < 0.5
    assert result.stats.finish == "stopped"
    assert result.stats.generated == 0 and result.text == "" and result.token_ids == []
    assert result.stats.prompt_evaluated == 0
    # The cache is still consistent: the next call computes the whole prompt, correctly.
    after = engine.generate(prompt, SamplingSettings.greedy(10))
    assert after.token_ids == reference(prompt, 10)


def test_stop_during_prompt_keeps_only_whole_batches(engine, reference, tok):
    prompt = long_prompt(tok, "During")
    batch = LLAMA_BATCH if engine.name == "llama" else TORCH_CHUNK
    method = "_eval" if engine.name == "llama" else "_prefill_chunk"
    real = getattr(engine, method)
    stop = threading.Event()
    calls = []

    def counting(*args):
        out = real(*args)
        calls.append(1)
        if len(calls) == 2:
            stop.set()  # as if the user pressed Esc during the second batch
        return out

    setattr(engine, method, counting)  # an instance attribute shadows the method
    try:
        result = engine.generate(prompt, SamplingSettings.greedy(10), stop=stop)
    finally:
        delattr(engine, method)
    assert result.stats.finish == "stopped"
    assert result.stats.generated == 0
    assert result.stats.prompt_evaluated == 2 * batch
    assert cached_ids(engine) == prompt[:2 * batch]

    after = engine.generate(prompt, SamplingSettings.greedy(10))
    assert after.stats.prompt_evaluated == len(prompt) - 2 * batch
    assert after.token_ids == reference(prompt, 10)


# --------------------------------------------------------------------------------------
# Context limits
# --------------------------------------------------------------------------------------


def test_context_overflow_and_context_finish(engine, tok):
    n_ctx = engine.n_ctx
    filler = ids_of(tok, STORY * 40)
    assert len(filler) > n_ctx
    with pytest.raises(ContextOverflow, match="context"):
        engine.generate(filler[:n_ctx], SamplingSettings.greedy(5))
    with pytest.raises(ContextOverflow):
        engine.generate(filler[:n_ctx + 7], SamplingSettings.greedy(5))

    prompt = filler[:n_ctx - 4]
    result = engine.generate(prompt, SamplingSettings.greedy(50))
    assert result.stats.finish == "context"
    assert result.stats.generated == 4
    assert len(prompt) + len(result.token_ids) == n_ctx


# --------------------------------------------------------------------------------------
# Padding ids
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def padded_checkpoint(tmp_path_factory, tiny_checkpoint):
    """The tiny checkpoint with its real output rows shrunk 100x: padding rows win every argmax."""
    folder = tmp_path_factory.mktemp("padded") / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    weight_map = json.loads((folder / "pytorch_model.bin.index.json").read_text())["weight_map"]
    shard = folder / weight_map["lm_head.weight"]
    state = torch.load(shard, weights_only=True)
    head = state["lm_head.weight"].clone()
    head[:N_VOCAB] *= 0.01
    state["lm_head.weight"] = head
    torch.save(state, shard)
    return folder


def test_padding_ids_are_never_sampled_by_the_engines(padded_checkpoint, tmp_path, tok):
    from assistant.engines.torch_engine import TorchEngine
    from converter.convert import convert

    prompt = ids_of(tok, "Hello there, how are you?")
    torch_engine = TorchEngine(padded_checkpoint, n_ctx=128)
    unmasked = greedy_generate(torch_engine.model, prompt, 10)
    assert min(unmasked) >= N_VOCAB  # without the mask, padding is all the model would pick
    llama_engine = LlamaEngine(convert(padded_checkpoint, tmp_path / "padded.gguf", "f32").path, n_ctx=128)
    hot = SamplingSettings(temperature=5.0, top_k=0, top_p=1.0, repeat_penalty=1.0, max_tokens=30, seed=7)
    for engine in (torch_engine, llama_engine):
        for settings in (SamplingSettings.greedy(10), hot):
            result = engine.generate(prompt, settings)
            assert result.token_ids and max(result.token_ids) < N_VOCAB
    llama_engine.close()
    torch_engine.close()


def test_sample_next_never_returns_padding():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(51200, generator=gen)
    logits[N_VOCAB:] = 50.0  # padding rows are by far the largest
    hot = SamplingSettings(temperature=10.0, top_k=0, top_p=1.0, repeat_penalty=1.0)
    draws = [int(sample_next(logits, hot, torch.empty(0, dtype=torch.long), gen)) for _ in range(200)]
    assert max(draws) < N_VOCAB
    assert len(set(draws)) > 150  # really sampling, from the whole real vocabulary
    assert int(sample_next(logits, SamplingSettings.greedy(), torch.empty(0, dtype=torch.long))) < N_VOCAB
    topk = SamplingSettings(temperature=1.0, top_k=5, top_p=0.9)
    assert int(sample_next(logits, topk, torch.empty(0, dtype=torch.long), gen)) < N_VOCAB
    assert logits[N_VOCAB:].eq(50.0).all()  # the caller's logits are left alone


# --------------------------------------------------------------------------------------
# sample_next
# --------------------------------------------------------------------------------------

NO_RECENT = torch.empty(0, dtype=torch.long)


def test_sample_next_greedy_and_top_k_1_are_argmax():
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        logits = torch.randn(1000, generator=gen) * 3
        best = int(logits.argmax())
        assert int(sample_next(logits, SamplingSettings.greedy(), NO_RECENT)) == best
        top1 = SamplingSettings(temperature=1.5, top_k=1, top_p=1.0, repeat_penalty=1.0)
        assert int(sample_next(logits, top1, NO_RECENT, gen)) == best
        tiny_p = SamplingSettings(temperature=1.0, top_k=0, top_p=1e-6, repeat_penalty=1.0)
        assert int(sample_next(logits, tiny_p, NO_RECENT, gen)) == best
    result = sample_next(logits, SamplingSettings.greedy(), NO_RECENT)
    assert result.dim() == 0 and result.dtype == torch.long


def test_sample_next_repetition_penalty():
    logits = torch.tensor([2.0, 1.5, -0.5, -0.6, 0.0])
    penalised = SamplingSettings(temperature=0.0, repeat_penalty=2.0)
    # Without a penalty token 0 wins; penalised (2.0 -> 1.0) token 1 wins.
    assert int(sample_next(logits, penalised, NO_RECENT)) == 0
    assert int(sample_next(logits, penalised, torch.tensor([0, 0, 4]))) == 1
    # Negative logits are multiplied: token 2 (-0.5 -> -1.0) drops below token 3 (-0.6).
    only_negative = torch.tensor([-0.5, -0.6])
    assert int(sample_next(only_negative, penalised, torch.tensor([0]))) == 1

    # Sampled: a repeated token's frequency goes down.
    def frequency(recent: torch.Tensor, penalty: float) -> float:
        gen = torch.Generator().manual_seed(3)
        settings = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repeat_penalty=penalty)
        draws = [int(sample_next(logits, settings, recent, gen)) for _ in range(400)]
        return draws.count(0) / len(draws)

    plain = frequency(torch.tensor([0]), 1.0)
    assert frequency(torch.tensor([0]), 1.5) < plain - 0.1
    assert frequency(torch.tensor([1]), 1.5) > plain  # penalising another token helps token 0
    assert SamplingSettings().repeat_penalty > 1.0  # the default does penalise


def test_sample_next_seeded_sampling_is_reproducible():
    logits = torch.randn(5000, generator=torch.Generator().manual_seed(5))
    settings = SamplingSettings(temperature=1.0, top_k=100, top_p=0.95)
    recent = torch.tensor([1, 2, 3])

    def draws(seed: int) -> list[int]:
        gen = torch.Generator().manual_seed(seed)
        return [int(sample_next(logits, settings, recent, gen)) for _ in range(30)]

    assert draws(42) == draws(42)
    assert draws(42) != draws(43)
    allowed = set(torch.topk(logits, 100).indices.tolist())
    assert set(draws(42)) <= allowed


def test_engines_apply_the_repetition_penalty_alike(llama_engine, torch_engine, tok):
    # The random model never repeats itself, so give it a prompt that starts with its own
    # continuation: its greedy reply then repeats a prompt token, which the penalty forbids.
    base = ids_of(tok, "one two three four five six")
    prompt = llama_engine.generate(base, SamplingSettings.greedy(6)).token_ids + base
    plain = llama_engine.generate(prompt, SamplingSettings.greedy(10)).token_ids
    assert any(t in prompt or t in plain[:i] for i, t in enumerate(plain))
    penalised = SamplingSettings(temperature=0.0, repeat_penalty=5.0, repeat_last_n=64, max_tokens=10)
    a = llama_engine.generate(prompt, penalised).token_ids
    b = torch_engine.generate(prompt, penalised).token_ids
    assert a == b != plain


def test_seeded_engine_sampling_is_reproducible(engine, tok):
    prompt = ids_of(tok, TEXT + "Pick a random word.\n###")
    settings = SamplingSettings(temperature=1.0, top_k=50, top_p=0.95, seed=11, max_tokens=12)
    a = engine.generate(prompt, settings)
    b = engine.generate(prompt, settings)
    assert a.token_ids == b.token_ids and len(a.token_ids) == 12
    c = engine.generate(prompt, SamplingSettings(temperature=1.0, top_k=50, top_p=0.95, seed=12, max_tokens=12))
    assert c.token_ids != a.token_ids


# --------------------------------------------------------------------------------------
# LlamaEngine options
# --------------------------------------------------------------------------------------


def test_llama_engine_options(converted, tok):
    path = converted("f32")
    with pytest.raises(XGenError, match="exceeds the model's context"):
        LlamaEngine(path, n_ctx=100_000)
    with pytest.raises(XGenError, match="KV cache type"):
        LlamaEngine(path, kv_type="q4_k")
    with pytest.raises(XGenError, match="no such file"):
        LlamaEngine(path.with_name("missing.gguf"))
    small = LlamaEngine(path, n_ctx=64, kv_type="q8_0")  # quantized KV cache (turns on flash attention)
    try:
        assert small.n_ctx == 64
        result = small.generate(ids_of(tok, "Hello there"), SamplingSettings.greedy(5))
        assert result.stats.generated == 5 and result.stats.finish == "length"
    finally:
        small.close()


# --------------------------------------------------------------------------------------
# open_engine
# --------------------------------------------------------------------------------------


def test_open_engine_errors(converted, tiny_checkpoint, tmp_path):
    gguf = converted("f32")
    with pytest.raises(XGenError, match="unknown engine 'vllm'"):
        open_engine("vllm", gguf)
    with pytest.raises(XGenError, match="GGUF file; the torch engine needs"):
        open_engine("torch", gguf)
    with pytest.raises(XGenError, match="is a folder; the llama engine needs a .gguf"):
        open_engine("llama", tiny_checkpoint)
    with pytest.raises(XGenError, match="use the remote engine"):
        open_engine("llama", "http://127.0.0.1:1")
    with pytest.raises(XGenError, match="needs a server address"):
        open_engine("remote", gguf)
    with pytest.raises(XGenError, match="no such file"):
        open_engine("llama", tmp_path / "nothing.gguf")
    with pytest.raises(XGenError, match="has no option 'device'"):
        open_engine("llama", gguf, device="cuda")
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"nope" * 10)
    with pytest.raises(XGenError, match="not a GGUF"):
        open_engine("llama", not_gguf)
    engine = open_engine("LLAMA", gguf)
    assert isinstance(engine, LlamaEngine) and engine.n_ctx == 512  # 0: the model's trained context
    engine.close()


# --------------------------------------------------------------------------------------
# RemoteEngine against a real llama-cpp-python server
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(converted, tmp_path_factory):
    """`python -m llama_cpp.server` on the q8_0 GGUF; yields (url, gguf path)."""
    import httpx

    gguf = converted("q8_0")
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "512"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def logs() -> str:
        log.flush()
        return log_path.read_text(errors="replace")[-3000:]

    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{logs()}")
            try:
                if httpx.get(url + "/v1/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within 60 s:\n{logs()}")
            time.sleep(0.2)
        yield url, gguf, logs
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def remote(server):
    from assistant.engines.remote import RemoteEngine

    url, _, _ = server
    engine = RemoteEngine(url, n_ctx=512)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def llama_q8(server):
    engine = LlamaEngine(server[1])
    yield engine
    engine.close()


def test_remote_greedy_matches_llama_engine(remote, llama_q8, server, tok):
    prompt = ids_of(tok, TEXT + "Hello there, who are you?\n###")
    local = llama_q8.generate(prompt, SamplingSettings.greedy(20))
    pieces: list[str] = []
    result = remote.generate(prompt, SamplingSettings.greedy(20), on_text=pieces.append)
    assert result.text == local.text, server[2]()
    assert len(pieces) >= 10 and "".join(pieces) == result.text  # streamed, piece by piece
    assert result.stats.finish == "length"
    assert result.stats.prompt_tokens == len(prompt)
    assert result.stats.generated == 20
    assert 0 < result.stats.seconds_to_first_token <= result.stats.seconds
    assert remote.model_name == Path(server[1]).stem and remote.n_ctx == 512
    assert remote.tokenize("<|endoftext|>") != [EOS] and remote.tokenize("<|endoftext|>", special=True) == [EOS]


def test_remote_stop_and_recovery(remote, llama_q8, tok):
    prompt = ids_of(tok, TEXT + "Count to ten.\n###")
    stop, pieces, on_text = stop_after_pieces(3)
    result = remote.generate(prompt, SamplingSettings.greedy(40), stop=stop, on_text=on_text)
    assert result.stats.finish == "stopped"
    assert len(pieces) == 3 and result.text == "".join(pieces)
    expected = llama_q8.generate(prompt, SamplingSettings.greedy(40))
    # llama-cpp-python's server drops bytes that are not valid UTF-8 where ReplyDecoder shows U+FFFD.
    assert expected.text.replace("\ufffd", "").startswith(result.text)

    already = threading.Event()
    already.set()
    nothing = remote.generate(prompt, SamplingSettings.greedy(40), stop=already)
    assert nothing.stats.finish == "stopped" and nothing.text == ""

    # The server is usable again after the closed stream, and gives the full answer.
    assert remote.generate(prompt, SamplingSettings.greedy(40)).text == expected.text.replace("\ufffd", "")


def test_remote_context_limits(remote, server, tok):
    from assistant.engines.remote import RemoteEngine

    filler = ids_of(tok, STORY * 40)
    with pytest.raises(ContextOverflow):
        remote.generate(filler[:512], SamplingSettings.greedy(5))
    result = remote.generate(filler[:508], SamplingSettings.greedy(50))
    assert result.stats.finish == "context"
    # A client told a larger context than the server has. llama-cpp-python's server
    # reports the error by ending the stream early: one line, not a silent empty answer.
    wrong = RemoteEngine(server[0], n_ctx=4096)
    with pytest.raises(XGenError) as info:
        wrong.generate(filler[:600], SamplingSettings.greedy(5))
    assert "\n" not in str(info.value) and "longer than its context" in str(info.value)
    wrong.close()


def test_remote_refuses_to_inject_control_tokens(remote, tok):
    # llama-cpp-python's server only takes text and parses special tokens in it.
    prompt = ids_of(tok, "Quoted from a document: <|endoftext|> end.")
    with pytest.raises(XGenError, match="control token"):
        remote.generate(prompt, SamplingSettings.greedy(5))


def test_remote_errors(server, tok):
    from assistant.engines.remote import RemoteEngine

    with pytest.raises(XGenError, match="pass n_ctx"):
        RemoteEngine(server[0])
    closed = free_port()
    with pytest.raises(XGenError) as info:
        RemoteEngine(f"http://127.0.0.1:{closed}", n_ctx=512)
    message = str(info.value)
    assert "\n" not in message and f"127.0.0.1:{closed}" in message and "refused" in message.lower()
    with pytest.raises(XGenError, match="not a server address"):
        RemoteEngine("127.0.0.1:8080", n_ctx=512)
    engine = open_engine("remote", server[0] + "/v1", n_ctx=512)
    assert engine.n_ctx == 512 and engine.base_url == server[0]
    engine.close()
