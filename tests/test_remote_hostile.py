"""What a hostile or broken OpenAI-compatible server can send the remote engine, bad
timeouts, and a server that never answers (given up on after the timeout, the wait shown):
every case ends in one line (an XGenError), never a traceback, and a stream line is never
buffered past its bound (issue 20, item 11)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.engines.base import SamplingSettings
from assistant.engines.remote import RemoteEngine, default_timeout, parse_timeout
from assistant.engines.sse import MAX_LINE_BYTES, StreamError, bounded_lines, parse_event
from models.errors import XGenError
from models.tokenizer import N_VOCAB
from tests.cli_helpers import xgen
from bench.openai_double import OpenAIDouble

PROMPT = [1212, 318, 257, 1332, 13]  # "This is a test."


def sse(*events) -> bytes:
    """A stream of `data:` events (dicts as JSON, bytes as they are), then [DONE]."""
    body = b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


def ending(reason: str = "stop") -> dict:
    return {"choices": [{"text": "", "index": 0, "finish_reason": reason}]}


@pytest.fixture(scope="module")
def hostile():
    """(double, engine): the double's stream is whatever `double.hostile` returns."""
    with OpenAIDouble(hostile=lambda body: [sse(ending())]) as double:
        engine = RemoteEngine(double.url)
        yield double, engine
        engine.close()


def generate(hostile, stream: bytes | list[bytes], **settings):
    double, engine = hostile
    blocks = [stream] if isinstance(stream, bytes) else stream
    double.hostile = lambda body: blocks
    return engine.generate(PROMPT, SamplingSettings.greedy(settings.get("max_tokens", 20)))


def one_line_error(hostile, stream) -> str:
    with pytest.raises(XGenError) as info:
        generate(hostile, stream)
    message = str(info.value)
    assert "\n" not in message and hostile[0].url in message, message
    return message


# -- malformed fields ------------------------------------------------------------------

MALFORMED = [
    ({"choices": [{"text": 42}]}, "text is int, not a string"),
    ({"choices": [{"text": ["a"]}]}, "text is list, not a string"),
    ({"choices": [{"text": "a", "finish_reason": 7}]}, "finish_reason is not a string"),
    ({"choices": [{"text": "a", "tokens": ["x"]}]}, "tokens is not a list of token ids"),
    ({"choices": [{"text": "a", "tokens": [-1]}]}, "tokens is not a list of token ids"),
    ({"choices": [{"text": "a", "tokens": [10**12]}]}, "tokens is not a list of token ids"),
    ({"choices": [{"text": "a"}], "tokens": [True]}, "tokens is not a list of token ids"),
    ({"choices": "text"}, "choices is not a list"),
    ({"choices": [5]}, "a choice is not an object"),
    ({"choices": [], "usage": 5}, "usage is not an object"),
    ({"choices": [], "usage": {"completion_tokens": "many"}}, "usage.completion_tokens is not a count"),
    ({"choices": [], "usage": {"prompt_tokens_details": []}}, "usage.prompt_tokens_details is not an object"),
    ({"choices": [], "timings": {"prompt_n": -3}}, "timings.prompt_n is not a count"),
    ([1, 2], "not a JSON object"),
    (42, "not a JSON object"),
    (b"{not json", "unreadable stream event"),
    (b"[" * 100_000, "unreadable stream event"),  # deeper than the JSON parser goes
]


@pytest.mark.parametrize("event, reason", MALFORMED, ids=[r for _, r in MALFORMED])
def test_a_malformed_event_is_one_line(hostile, event, reason):
    message = one_line_error(hostile, sse(event, ending()))
    assert reason in message


def test_well_formed_events_still_read(hostile):
    done = generate(hostile, sse({"choices": [{"text": "Hel", "tokens": [39, 417]}]},
                                 {"choices": [{"text": "lo", "finish_reason": None}], "usage": None},
                                 {"choices": [{"text": "", "finish_reason": "stop"}],
                                  "usage": {"completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}}}))
    assert done.text == "Hello" and done.stats.finish == "eos"
    assert done.stats.generated == 3 and done.stats.prompt_evaluated == len(PROMPT) - 2


def test_a_server_that_ignores_max_tokens_is_cut_at_it(hostile):
    done = generate(hostile, sse(*[{"choices": [{"text": f"w{i} "}]} for i in range(50)], ending()), max_tokens=5)
    assert done.stats.finish == "length" and done.text == "w0 w1 w2 w3 w4 "


# -- line length -----------------------------------------------------------------------


def test_a_64_mb_line_is_refused_once_past_the_bound(hostile):
    block = b"x" * (1 << 20)
    double = hostile[0]
    while not double.streamed.empty():
        double.streamed.get()
    message = one_line_error(hostile, [b"data: " + block] + [block] * 63)
    assert "longer than 1 MiB" in message
    sent = double.streamed.get(timeout=30)
    assert sent < 16 << 20  # the client hung up: the server could not send the rest


def test_bounded_lines_splits_every_line_ending_across_chunks():
    chunks = [b"data: a\r", b"\ndata: b\rdata: c", b"\n\n", b"data: d"]
    assert [line for line in bounded_lines(chunks) if line] == ["data: a", "data: b", "data: c", "data: d"]
    exact = b"y" * 100
    assert list(bounded_lines([exact[:60], exact[60:] + b"\n"], limit=100)) == ["y" * 100]


def test_bounded_lines_holds_no_more_than_the_bound():
    taken = []

    def trickle():  # a 3 MiB line, 64 KiB at a time
        for i in range(48):
            taken.append(i)
            yield b"z" * (64 << 10)

    with pytest.raises(StreamError, match="longer than 1 MiB"):
        list(bounded_lines(trickle()))
    assert len(taken) == MAX_LINE_BYTES // (64 << 10) + 1


# -- fuzzing ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
choice_dicts = st.fixed_dictionaries({}, optional={"text": json_values, "finish_reason": json_values,
                                                   "tokens": json_values, "index": json_values})
events = st.fixed_dictionaries({}, optional={
    "choices": st.lists(choice_dicts, max_size=3) | json_values,
    "usage": st.fixed_dictionaries({}, optional={"completion_tokens": json_values,
                                                 "prompt_tokens_details": json_values}) | json_values,
    "timings": st.fixed_dictionaries({}, optional={"prompt_n": json_values, "predicted_n": json_values}),
    "tokens": json_values, "error": json_values}) | json_values


@settings(max_examples=400, deadline=None)
@given(events)
def test_fuzzed_events_parse_or_are_refused_in_one_line(event):
    try:
        parsed = parse_event(json.dumps(event))
    except StreamError as exc:
        assert "\n" not in str(exc)
        return
    for choice in parsed.choices:
        assert isinstance(choice.text, str)
        assert choice.finish_reason is None or isinstance(choice.finish_reason, str)
        assert all(type(t) is int and 0 <= t < N_VOCAB for t in choice.ids)
    for count in (parsed.generated, parsed.prompt_evaluated, parsed.cached):
        assert count is None or (type(count) is int and count >= 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(events, min_size=1, max_size=3))
def test_fuzzed_streams_end_in_a_reply_or_one_line(hostile, stream):
    try:
        done = generate(hostile, sse(*stream, ending()))
    except XGenError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(done.text, str) and done.stats.finish in ("eos", "length")


# -- timeouts --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0", "soon"])
def test_bad_timeouts_are_refused_in_one_line(value, monkeypatch, tmp_path):
    from assistant.cli import main

    with pytest.raises(XGenError, match="must be a number of seconds above 0"):
        parse_timeout(value, "--timeout")
    monkeypatch.setenv("XGEN_REMOTE_TIMEOUT", value)
    with pytest.raises(XGenError, match="XGEN_REMOTE_TIMEOUT must be a number of seconds above 0"):
        default_timeout()
    with pytest.raises(XGenError, match="the remote timeout must be"):
        RemoteEngine("http://127.0.0.1:9", n_ctx=512, timeout=float(value) if value != "soon" else value)

    notes = tmp_path / "notes.txt"
    notes.write_text("The unit failed.\n")
    for args, source in ((["--timeout", value], "--timeout"), ([], "XGEN_REMOTE_TIMEOUT")):
        env = {"XGEN_HOME": str(tmp_path / "home")} | ({} if args else {"XGEN_REMOTE_TIMEOUT": value})
        if args:
            monkeypatch.delenv("XGEN_REMOTE_TIMEOUT")
        result = CliRunner().invoke(main, ["ask", str(notes), "-q", "What failed?", "--model",
                                           "http://127.0.0.1:9", *args], env=env)
        assert result.exit_code == 1, result.output
        assert result.output.strip() == (f"error: {source} must be a number of seconds above 0 (and finite), "
                                         f"not {value!r}")


def test_good_timeouts_pass(monkeypatch):
    assert parse_timeout("2.5", "--timeout") == 2.5
    monkeypatch.setenv("XGEN_REMOTE_TIMEOUT", " 30 ")
    assert default_timeout() == 30.0


# -- a remote server that accepts and never answers --------------------------------------


class SilentServer:
    """Accepts connections on 127.0.0.1 and never sends a byte (a hung server)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._stop = False
        import threading

        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.held.append(conn)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self.thread.join(2)
        for conn in self.held:
            conn.close()
        self.sock.close()


def _notes(tmp_path: Path) -> Path:
    notes = tmp_path / "notes.txt"
    notes.write_text("The cooling unit in hall 3 failed on 2 September.\n")
    return notes


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_server_that_never_answers_is_given_up_on_with_the_wait_shown(tmp_path, how):
    with SilentServer() as server:
        timeout = ["--timeout", "3"] if how == "option" else []
        env = {"XGEN_HOME": str(tmp_path / "h"), **({"XGEN_REMOTE_TIMEOUT": "3"} if how == "env" else {})}
        t0 = time.monotonic()
        out = xgen("ask", str(_notes(tmp_path)), "-q", "What failed?", "--model", server.url, "--ctx", "2048",
                   *timeout, env=env, timeout=60)
        elapsed = time.monotonic() - t0
    assert out.returncode == 1
    assert 3 <= elapsed < 20  # gave up after the 3 s asked for, not httpx's 10 minutes
    chunks = out.stderr.replace("\r", "\n").splitlines()  # (text mode turns "\r" into "\n" already)
    waits = [c.strip() for c in chunks if c.strip().startswith("waiting for")]
    assert waits and waits[0].startswith(f"waiting for {server.url}: 1 s (gives up after 3 s)"), out.stderr
    assert any(w.startswith(f"waiting for {server.url}: 2 s") for w in waits), out.stderr  # it counts
    last = out.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert last == (f"error: {server.url} sent nothing for 3 s after GET /v1/models; it may be stuck, or busy "
                    "with a long prompt (wait longer with --timeout SECONDS or XGEN_REMOTE_TIMEOUT)")
    assert "Traceback" not in out.stderr


def test_a_server_silent_before_the_first_token(tmp_path):
    """It answers the model list, then accepts the completion and sends no token."""
    from bench.openai_double import OpenAIDouble

    with OpenAIDouble(["never sent"], delay=60) as server:
        t0 = time.monotonic()
        out = xgen("summarize", str(_notes(tmp_path)), "--model", server.url, "--timeout", "2",
                   env={"XGEN_HOME": str(tmp_path / "h")}, timeout=60)
        elapsed = time.monotonic() - t0
    assert out.returncode == 1 and elapsed < 20
    assert "waiting for " + server.url + ": 1 s" in out.stderr
    last = out.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith(f"error: {server.url} sent nothing for 2 s before the first token;"), out.stderr
    assert "Traceback" not in out.stderr


def test_remote_engine_timeout_and_wait_notices_in_process(monkeypatch):
    from assistant.engines.remote import DEFAULT_TIMEOUT, RemoteEngine, default_timeout

    monkeypatch.delenv("XGEN_REMOTE_TIMEOUT", raising=False)
    assert default_timeout() == DEFAULT_TIMEOUT == 120
    monkeypatch.setenv("XGEN_REMOTE_TIMEOUT", "soon")
    with pytest.raises(XGenError, match="XGEN_REMOTE_TIMEOUT must be a number of seconds"):
        default_timeout()
    monkeypatch.setenv("XGEN_REMOTE_TIMEOUT", "1.5")
    heard: list = []
    with SilentServer() as server:
        t0 = time.monotonic()
        with pytest.raises(XGenError, match=r"sent nothing for 1\.5 s after GET /v1/models"):
            RemoteEngine(server.url, n_ctx=2048, on_wait=heard.append)
        assert time.monotonic() - t0 < 5
    assert heard[0] == f"waiting for {server.url}: 1 s (gives up after 1.5 s)" and heard[-1] is None


def test_a_prompt_server_is_not_slowed_or_noisy(tmp_path):
    """A server that answers at once: no waiting line, the answer as before."""
    from bench.openai_double import OpenAIDouble

    with OpenAIDouble(["It failed on 2 September [1]."]) as server:
        out = xgen("ask", str(_notes(tmp_path)), "-q", "What failed?", "--model", server.url, "--timeout", "5",
                   env={"XGEN_HOME": str(tmp_path / "h")}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "It failed on 2 September" in out.stdout and "waiting for" not in out.stderr



def test_a_server_gone_mid_answer_is_named_so_not_blamed_on_the_prompt(hostile):
    words = [{"choices": [{"text": w, "index": 0, "finish_reason": None}]} for w in ("It ", "was ")]
    cut = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in words)  # then the connection closes
    message = one_line_error(hostile, cut)
    assert "the server closed the connection" in message and "context" not in message
    # Closed before any word: llama-cpp-python's way of refusing a prompt too long; the hint stays.
    assert "longer than its context" in one_line_error(hostile, b"")
