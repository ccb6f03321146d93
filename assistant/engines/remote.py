"""An engine that talks to an OpenAI-compatible completion server over HTTP.

Tested against llama-cpp-python's server (`python -m llama_cpp.server`); written to
also fit llama.cpp's `llama-server` and vLLM serving an XGen model.

* Tokens: the model is XGen, so tokenizing locally with XGenTokenizer is exact; prompts
  are token ids like for every engine.
* Prompt as ids or as text: llama-server and vLLM accept a list of token ids as
  `prompt`, which keeps document text from ever becoming control tokens.
  llama-cpp-python's server only takes a string (`CreateCompletionRequest.prompt` is
  `str | list[str]`), which it tokenizes with special tokens parsed. When a server
  rejects ids (a validation error: HTTP 422, or 500 from llama-cpp-python's
  server), the prompt is sent as its text from then on, with two caveats:
  the server re-tokenizes the whole text, which can split differently where the prompt
  was assembled from separately tokenized pieces (output may then differ slightly from
  a local engine); and special-token text inside the prompt (a document quoting
  "<|endoftext|>") would become a control token, so such a prompt is refused with an
  XGenError instead of being sent.
* Context size: llama-server tells it (GET /props), vLLM too (max_model_len in GET
  /v1/models); llama-cpp-python's server does not, so `n_ctx` must then be given.
* Streaming: `stream: true` (server-sent events). The response is read by a helper
  thread, so a `stop` request is honoured within ~50 ms even while the server is still
  busy with a long prompt; the connection is then closed, which makes the server stop.
* Reply tokens: the servers stream text, not ids, so `Completion.token_ids` is the
  local tokenization of the reply text (exact for what was shown, not necessarily the
  ids the server sampled), unless the server sends ids. `stats.generated` comes from
  the server's usage/timings when it reports them, else from the number of streamed
  events (one per token on llama.cpp servers).
* llama-cpp-python's server decodes each token through a 32-byte buffer and mangles
  the rare GPT-2 tokens longer than that (long runs of dashes or spaces): a server-side
  quirk this client cannot undo.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from assistant.engines.base import (CONTROL_IDS, Completion, ContextOverflow, Engine, GenerationStats, OnText,
                                    ReplyDecoder, SamplingSettings, TiktokenVocab, Timer)
from models.errors import XGenError
from models.tokenizer import N_VOCAB, XGenTokenizer

_PADDING_BIAS = {str(i): -100.0 for i in range(N_VOCAB, 51200)}  # OpenAI's bias range is [-100, 100]
_POLL_SECONDS = 0.05

# How long the server may stay silent: before its first answer (it may be busy with a
# long prompt) and between streamed tokens. The user sets it with --timeout or
# XGEN_REMOTE_TIMEOUT; while waiting, `on_wait` hears how long it has been.
DEFAULT_TIMEOUT = 120.0
TIMEOUT_ENV = "XGEN_REMOTE_TIMEOUT"
WAIT_NOTICE_AFTER = 1.0  # seconds of silence before the first notice, then one notice a second
OnWait = Callable[[str | None], None]  # "waiting for URL: 12 s", then None when the wait is over


def default_timeout() -> float:
    """XGEN_REMOTE_TIMEOUT (seconds), else DEFAULT_TIMEOUT."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise XGenError(f"{TIMEOUT_ENV} must be a number of seconds above 0, not {text!r}")
    return value


def _rejects_id_prompt(status: int, body: str) -> bool:
    """Whether an error answer says the prompt must be text (a request validation error).

    FastAPI answers 422; llama-cpp-python's server wraps validation errors as HTTP 500.
    """
    lowered = body.lower()
    return status in (400, 422, 500) and "prompt" in lowered and ("string" in lowered or "str" in lowered)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RemoteEngine(TiktokenVocab, Engine):
    name = "remote"

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 n_ctx: int | None = None, timeout: float | None = None, on_wait: OnWait | None = None):
        """`timeout`: seconds the server may stay silent (before its first answer, between
        tokens), default XGEN_REMOTE_TIMEOUT or 120; `on_wait` is told, about once a second
        while it is silent, how long it has been (see OnWait)."""
        import httpx

        url = str(base_url).strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise XGenError(f"{base_url!r} is not a server address; expected e.g. http://127.0.0.1:8000")
        if url.endswith("/v1"):
            url = url[:-3]
        self.base_url = url
        host = parts.hostname or ""
        loopback = host in ("localhost", "::1") or host.startswith("127.")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = float(timeout) if timeout else default_timeout()
        self.on_wait = on_wait
        # httpx's own limit is a backstop a little past ours (ours gives the clear message).
        self._client = httpx.Client(base_url=url, headers=headers, trust_env=not loopback,
                                    timeout=httpx.Timeout(self.timeout + 5, connect=min(10.0, self.timeout)))
        self._tokenizer = XGenTokenizer(allow_download=False)
        self.server_kind = "openai"
        self._ids_ok: bool | None = None  # does the server take token ids as the prompt? None: not known yet

        models = self._get_json("/v1/models")
        entries = [m for m in (models.get("data") or []) if isinstance(m, dict)]
        if model is None and entries:
            model = entries[0].get("id")
        self.model = model
        self.model_name = self._display_name(model)
        server_ctx = None
        for entry in entries:
            if entry.get("id") == model and (entry.get("owned_by") == "vllm" or "max_model_len" in entry):  # vLLM
                self.server_kind, self._ids_ok = "vllm", True
                if isinstance(entry.get("max_model_len"), int):
                    server_ctx = entry["max_model_len"]
        props = self._get_json("/props", optional=True)  # llama-server
        # Requests the server runs at once (llama-server --parallel); None: not reported.
        slots = props.get("total_slots") if props else None
        self.total_slots: int | None = slots if isinstance(slots, int) and slots > 0 else None
        if props:
            settings = props.get("default_generation_settings") or {}
            ctx = props.get("n_ctx") or settings.get("n_ctx")
            if isinstance(ctx, int) and ctx > 0:
                server_ctx = ctx
            self.server_kind, self._ids_ok = "llama-server", True
        if server_ctx is None and n_ctx is None:
            raise XGenError(f"{url} does not report its context size; pass n_ctx (the context the server "
                            f"was started with, e.g. its --n_ctx)")
        self._n_ctx = int(server_ctx if server_ctx is not None else n_ctx)

    @staticmethod
    def _display_name(model: str | None) -> str:
        if not model:
            return "remote"
        name = PurePosixPath(model.replace("\\", "/")).name
        return name[:-5] if name.endswith(".gguf") else name

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def identity(self) -> str:
        return f"remote:{self.base_url}:{self.model or ''}"

    def close(self) -> None:
        self._client.close()

    # -- HTTP ----------------------------------------------------------------------

    def _connection_error(self, exc: Exception) -> XGenError:
        import httpx

        if isinstance(exc, httpx.TimeoutException):
            return XGenError(f"{self.base_url} did not answer in time ({_one_line(type(exc).__name__)})")
        reason = _one_line(str(exc)) or type(exc).__name__
        return XGenError(f"cannot reach {self.base_url}: {reason}; is the server running?")

    def _http_error(self, path: str, status: int, body: str) -> XGenError:
        message = body
        try:
            data = json.loads(body)
            if isinstance(data, dict):
                err = data.get("error", data.get("detail", data))
                if isinstance(err, dict):
                    err = err.get("message", err)
                message = err if isinstance(err, str) else json.dumps(err)
        except ValueError:
            pass
        text = f"{self.base_url}{path}: HTTP {status}: {_one_line(message) or 'no details'}"
        if status == 400 and "context" in str(message).lower():
            return ContextOverflow(text)
        return XGenError(text)

    def _silent_for(self, what: str) -> XGenError:
        return XGenError(f"{self.base_url} sent nothing for {self.timeout:g} s {what}; it may be stuck, or busy "
                         f"with a long prompt (wait longer with --timeout SECONDS or {TIMEOUT_ENV})")

    def _notify_wait(self, waited: float) -> None:
        if self.on_wait is not None:
            self.on_wait(f"waiting for {self.base_url}: {waited:.0f} s (gives up after {self.timeout:g} s)")

    def _end_wait(self, notified: bool) -> None:
        if notified and self.on_wait is not None:
            self.on_wait(None)

    def _get(self, path: str):
        """GET on a helper thread, so the wait is shown and bounded by `timeout`."""
        import httpx

        result: queue.Queue = queue.Queue()

        def run() -> None:
            try:
                result.put(("ok", self._client.get(path)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                result.put(("error", exc))

        threading.Thread(target=run, name="xgen-remote-get", daemon=True).start()
        started = time.monotonic()
        next_notice, notified = WAIT_NOTICE_AFTER, False
        try:
            while True:
                try:
                    kind, value = result.get(timeout=_POLL_SECONDS)
                    break
                except queue.Empty:
                    waited = time.monotonic() - started
                    if waited > self.timeout:
                        raise self._silent_for(f"after GET {path}") from None
                    if waited >= next_notice:
                        self._notify_wait(waited)
                        notified, next_notice = True, next_notice + 1.0
        finally:
            self._end_wait(notified)
        if kind == "error":
            if isinstance(value, httpx.TimeoutException) and not isinstance(value, httpx.ConnectTimeout):
                raise self._silent_for(f"after GET {path}") from None
            if isinstance(value, httpx.HTTPError):
                raise self._connection_error(value) from None
            raise value
        return value

    def _get_json(self, path: str, optional: bool = False) -> dict:
        response = self._get(path)
        if response.status_code >= 400:
            if optional and response.status_code in (404, 405, 501):
                return {}
            raise self._http_error(path, response.status_code, response.text)
        try:
            data = response.json()
        except ValueError:
            if optional:
                return {}
            raise XGenError(f"{self.base_url}{path}: the answer is not JSON; is this an "
                            f"OpenAI-compatible server?") from None
        return data if isinstance(data, dict) else {}

    def _request_body(self, prompt: list[int] | str, settings: SamplingSettings, max_tokens: int) -> dict:
        body = {
            "prompt": prompt,
            "max_tokens": max_tokens,
            "stream": True,
            "temperature": max(0.0, settings.temperature),
            "top_p": settings.top_p,
            "min_p": 0.0,  # llama.cpp servers default to 0.05; the local engines use none
            "top_k": settings.top_k if settings.top_k > 0 else (-1 if self.server_kind == "vllm" else 0),
            "repeat_penalty": settings.repeat_penalty,  # llama.cpp servers
            "repetition_penalty": settings.repeat_penalty,  # vLLM, same semantics
            "repeat_last_n": settings.repeat_last_n,  # llama-server
            "logit_bias": _PADDING_BIAS,  # the embedding's padding rows have no text
            "cache_prompt": True,  # llama-server: reuse the common prefix
        }
        if self.model:
            body["model"] = self.model
        if settings.seed is not None:
            body["seed"] = settings.seed
        if settings.stop_strings:
            body["stop"] = list(settings.stop_strings)[:4]  # OpenAI's limit
        if self.server_kind in ("vllm", "llama-server"):
            body["stream_options"] = {"include_usage": True}
        return body

    def _text_prompt(self, prompt_ids: list[int]) -> str:
        text = self._tokenizer.decode(prompt_ids)
        reparsed = self._tokenizer.encode(text, allow_special=True)  # what the server will see
        if sum(i in CONTROL_IDS for i in reparsed) != sum(i in CONTROL_IDS for i in prompt_ids):
            raise XGenError(f"{self.base_url} only takes text prompts, and this prompt contains special-token "
                            f"text (such as '<|endoftext|>') that it would read as a control token; use "
                            f"llama-server or the local llama engine for it")
        return text

    def _start_stream(self, body: dict, events: queue.Queue, cancel: threading.Event) -> threading.Thread:
        """Read the SSE stream on a helper thread, putting (kind, payload) on `events`."""
        import httpx

        def run() -> None:
            try:
                with self._client.stream("POST", "/v1/completions", json=body) as response:
                    if response.status_code >= 400:
                        response.read()
                        events.put(("http", (response.status_code, response.text)))
                        return
                    for line in response.iter_lines():
                        if cancel.is_set():
                            return  # leaving the block closes the connection
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            events.put(("done", None))
                            break
                        try:
                            events.put(("chunk", json.loads(data)))
                        except ValueError:
                            events.put(("error", XGenError(f"{self.base_url}: unreadable stream event "
                                                           f"{_one_line(data, 80)!r}")))
                            return
            except httpx.HTTPError as exc:
                events.put(("error", self._connection_error(exc)))
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
                events.put(("error", exc))
            finally:
                events.put(("end", None))

        thread = threading.Thread(target=run, name="xgen-remote-stream", daemon=True)
        thread.start()
        return thread

    # -- generation ----------------------------------------------------------------

    def generate(self, prompt_ids: list[int], settings: SamplingSettings, *,
                 stop: threading.Event | None = None, on_text: OnText | None = None) -> Completion:
        if not prompt_ids:
            raise XGenError("cannot generate from an empty prompt")
        self.check_fits(prompt_ids)
        timer = Timer()
        prompt_ids = [int(i) for i in prompt_ids]
        n_prompt = len(prompt_ids)
        stats = GenerationStats(prompt_tokens=n_prompt, prompt_evaluated=n_prompt)
        stream = ReplyDecoder(on_text, settings.stop_strings)
        server_ids: list[int] = []
        n_chunks = 0  # streamed events carrying a token: one per token on llama.cpp servers
        usage: dict = {}
        timings: dict = {}

        def stopped() -> bool:
            return stop is not None and stop.is_set()

        def finish(reason: str) -> Completion:
            text = stream.close()
            # Cut at a stop string, the server's ids run past the text: re-tokenize it.
            ids = server_ids if server_ids and stream.stop_at is None else self._tokenizer.encode(text)
            stats.finish = reason
            stats.generated = int(usage.get("completion_tokens") or timings.get("predicted_n") or n_chunks)
            if isinstance(timings.get("prompt_n"), int):
                stats.prompt_evaluated = timings["prompt_n"]
            elif isinstance((usage.get("prompt_tokens_details") or {}).get("cached_tokens"), int):
                stats.prompt_evaluated = n_prompt - usage["prompt_tokens_details"]["cached_tokens"]
            stats.seconds = timer.elapsed()
            return Completion(text, ids, stats)

        if stopped():
            stats.prompt_evaluated = 0
            return finish("stopped")
        max_tokens = min(settings.max_tokens, self._n_ctx - n_prompt)
        if max_tokens <= 0:  # servers read max_tokens <= 0 as "no limit"
            stats.prompt_evaluated = 0
            return finish("length" if settings.max_tokens <= 0 else "context")

        use_ids = self._ids_ok is not False
        while True:
            prompt = prompt_ids if use_ids else self._text_prompt(prompt_ids)
            events: queue.Queue = queue.Queue()
            cancel = threading.Event()
            self._start_stream(self._request_body(prompt, settings, max_tokens), events, cancel)
            reason = None
            done = retry = False
            last_event = time.monotonic()
            next_notice, notified = WAIT_NOTICE_AFTER, False
            try:
                while True:
                    if stopped():
                        return finish("stopped")
                    try:
                        kind, payload = events.get(timeout=_POLL_SECONDS)
                    except queue.Empty:
                        silent = time.monotonic() - last_event
                        if silent > self.timeout:
                            raise self._silent_for("before the first token" if not n_chunks
                                                   else "between two tokens") from None
                        if silent >= next_notice:
                            self._notify_wait(silent)
                            notified, next_notice = True, next_notice + 1.0
                        continue
                    last_event = time.monotonic()
                    if notified:
                        self._end_wait(notified)
                        notified, next_notice = False, WAIT_NOTICE_AFTER
                    if kind == "end":
                        break
                    if kind == "done":
                        done = True
                        continue
                    if kind == "error":
                        raise payload
                    if kind == "http":
                        status, body = payload
                        if use_ids and self._ids_ok is None and _rejects_id_prompt(status, body):
                            self._ids_ok = False  # llama-cpp-python's server: text prompts only
                            use_ids, retry = False, True
                            continue
                        raise self._http_error("/v1/completions", status, body)
                    chunk = payload
                    if isinstance(chunk.get("error"), (dict, str)):
                        raise self._http_error("/v1/completions", 500, json.dumps(chunk))
                    usage = chunk.get("usage") or usage
                    timings = chunk.get("timings") or timings
                    for choice in chunk.get("choices") or []:
                        text = choice.get("text") or ""
                        if text or not choice.get("finish_reason"):
                            n_chunks += 1
                        tokens = choice.get("tokens") or chunk.get("tokens")
                        if isinstance(tokens, list):
                            server_ids.extend(int(t) for t in tokens if int(t) != self.eos_id)
                        if text:
                            if not stats.seconds_to_first_token:
                                stats.seconds_to_first_token = timer.elapsed()
                            if stream.push(text.encode("utf-8")):
                                return finish("eos")  # an invented next turn (the server may not stop)
                        reason = choice.get("finish_reason") or reason
            finally:
                cancel.set()
                self._end_wait(notified)
            if retry:
                continue
            if not done and reason is None:
                # llama-cpp-python's server reports an error raised mid-stream (such as a
                # prompt longer than its context) by just ending the stream.
                raise XGenError(f"{self.base_url}/v1/completions: the server ended the answer without a "
                                f"reason (its log may tell; is the prompt longer than its context?)")
            if use_ids and self._ids_ok is None:
                self._ids_ok = True
            break
        if reason == "length":
            return finish("context" if max_tokens < settings.max_tokens else "length")
        return finish("eos")
