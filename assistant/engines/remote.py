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
* Streaming: `stream: true` (server-sent events), read by a helper thread, so the
  generation loop (driver.py) keeps its stop checks and its silence watchdog while
  the server is busy with a long prompt; a stop closes the connection, which makes
  the server stop. Every line is bounded and every field checked (sse.py).
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
import math
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from assistant.engines.base import CONTROL_IDS, ContextOverflow, Engine, SamplingSettings, TiktokenVocab
from assistant.engines.driver import WAITING, OnWait, Prefilled, ServerReport, SilenceWatch, Step, Text
from assistant.engines.sse import Event, StreamError, bounded_lines, one_line, parse_event
from models.errors import XGenError
from models.tokenizer import N_VOCAB, XGenTokenizer

_PADDING_BIAS = {str(i): -100.0 for i in range(N_VOCAB, 51200)}  # OpenAI's bias range is [-100, 100]
_POLL_SECONDS = 0.05

# How long the server may stay silent: before its first answer (it may be busy with a
# long prompt) and between streamed tokens. The user sets it with --timeout or
# XGEN_REMOTE_TIMEOUT; while waiting, `on_wait` hears how long it has been.
DEFAULT_TIMEOUT = 120.0
TIMEOUT_ENV = "XGEN_REMOTE_TIMEOUT"
_WAIT_HINT = f" (wait longer with --timeout SECONDS or {TIMEOUT_ENV})"


def parse_timeout(value: object, source: str) -> float:
    """Seconds from `value` (text or a number), which must be finite and above 0; else an
    XGenError naming `source` (the option or variable it came from)."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise XGenError(f"{source} must be a number of seconds above 0 (and finite), not {one_line(str(value), 40)!r}")
    return seconds


def default_timeout() -> float:
    """XGEN_REMOTE_TIMEOUT (seconds), else DEFAULT_TIMEOUT."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    return parse_timeout(text, TIMEOUT_ENV) if text else DEFAULT_TIMEOUT


def _rejects_id_prompt(status: int, body: str) -> bool:
    """Whether an error answer says the prompt must be text (a request validation error).

    FastAPI answers 422; llama-cpp-python's server wraps validation errors as HTTP 500.
    """
    lowered = body.lower()
    return status in (400, 422, 500) and "prompt" in lowered and ("string" in lowered or "str" in lowered)


class RemoteEngine(TiktokenVocab, Engine):
    name = "remote"

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 n_ctx: int | None = None, timeout: float | None = None, on_wait: OnWait | None = None):
        """`timeout`: seconds the server may stay silent (before its first answer, between
        tokens), default XGEN_REMOTE_TIMEOUT or 120; `on_wait` is told, about once a second
        while it is silent, how long it has been (see OnWait)."""
        import httpx

        url = str(base_url).strip().rstrip("/")
        not_an_address = XGenError(f"{base_url!r} is not a server address; expected e.g. http://127.0.0.1:8000")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - parsed on access: "http://h:x" raises here
        except ValueError:  # "http://[::1" (an unclosed IPv6 bracket), a port that is no number
            raise not_an_address from None
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise not_an_address
        if url.endswith("/v1"):
            url = url[:-3]
        self.base_url = url
        host = parts.hostname or ""
        loopback = host in ("localhost", "::1") or host.startswith("127.")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = default_timeout() if timeout is None else parse_timeout(timeout, "the remote timeout")
        self.on_wait = on_wait
        # httpx's own limit is a backstop a little past ours (ours gives the clear message).
        self._client = httpx.Client(base_url=url, headers=headers, trust_env=not loopback,
                                    timeout=httpx.Timeout(self.timeout + 5, connect=min(10.0, self.timeout)))
        self._tokenizer = XGenTokenizer(allow_download=False)
        self.server_kind = "openai"
        self._ids_ok: bool | None = None  # does the server take token ids as the prompt? None: not known yet

        models = self._get_json("/v1/models")
        listed = models.get("data")
        entries = [m for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
        if model is None and entries and isinstance(entries[0].get("id"), str):
            model = entries[0]["id"]
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
            settings = props.get("default_generation_settings")
            ctx = props.get("n_ctx") or (settings.get("n_ctx") if isinstance(settings, dict) else None)
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

    def _went_away(self) -> XGenError:
        """The server was reached and answering, then closed the connection (the stream cut,
        or ended with no finish reason after some words)."""
        return XGenError(f"{self.base_url}: the server closed the connection in the middle of the answer "
                         "(did it stop or crash?)")

    def _connection_error(self, exc: Exception) -> XGenError:
        import httpx

        if isinstance(exc, httpx.TimeoutException):
            return XGenError(f"{self.base_url} did not answer in time ({one_line(type(exc).__name__)})")
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):  # it was reached, then went away
            return self._went_away()
        reason = one_line(str(exc)) or type(exc).__name__
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
        text = f"{self.base_url}{path}: HTTP {status}: {one_line(message) or 'no details'}"
        if status == 400 and "context" in str(message).lower():
            return ContextOverflow(text)
        return XGenError(text)

    def silence_watch(self) -> SilenceWatch:
        return SilenceWatch(self.timeout, self.on_wait, self.base_url, _WAIT_HINT)

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
        watch = self.silence_watch()
        try:
            while True:
                try:
                    kind, value = result.get(timeout=_POLL_SECONDS)
                    break
                except queue.Empty:
                    watch.check(f"after GET {path}")
        finally:
            watch.close()
        if kind == "error":
            if isinstance(value, httpx.TimeoutException) and not isinstance(value, httpx.ConnectTimeout):
                raise watch.gave_up(f"after GET {path}") from None
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

    def _start_stream(self, body: dict, events: queue.Queue, cancel: threading.Event) -> None:
        """Read the SSE stream on a helper thread, putting (kind, payload) on `events`."""
        import httpx

        def run() -> None:
            try:
                # Identity encoding: a compressed line could grow past the line bound in one piece.
                with self._client.stream("POST", "/v1/completions", json=body,
                                         headers={"Accept-Encoding": "identity"}) as response:
                    if response.status_code >= 400:
                        response.read()
                        events.put(("http", (response.status_code, response.text)))
                        return
                    for line in bounded_lines(response.iter_bytes()):
                        if cancel.is_set():
                            return  # leaving the block closes the connection
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            events.put(("done", None))
                            break
                        events.put(("event", parse_event(data)))
            except httpx.HTTPError as exc:
                events.put(("error", self._connection_error(exc)))
            except StreamError as exc:
                events.put(("error", XGenError(f"{self.base_url}/v1/completions: {exc}")))
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
                events.put(("error", exc))
            finally:
                events.put(("end", None))

        threading.Thread(target=run, name="xgen-remote-stream", daemon=True).start()

    # -- generation ----------------------------------------------------------------

    def stream(self, prompt_ids: list[int], settings: SamplingSettings, budget: int,
               stop: threading.Event | None) -> Iterator[Step]:
        use_ids = self._ids_ok is not False
        while True:
            prompt = prompt_ids if use_ids else self._text_prompt(prompt_ids)
            events: queue.Queue = queue.Queue()
            cancel = threading.Event()
            self._start_stream(self._request_body(prompt, settings, budget), events, cancel)
            report: dict = {}
            reason = None
            answered = done = retry = False
            try:
                while True:
                    try:
                        kind, payload = events.get(timeout=_POLL_SECONDS)
                    except queue.Empty:
                        yield WAITING
                        continue
                    if kind == "end":
                        break
                    if kind == "done":
                        done = True
                    elif kind == "error":
                        raise payload
                    elif kind == "http":
                        status, body = payload
                        if use_ids and self._ids_ok is None and _rejects_id_prompt(status, body):
                            retry = True  # llama-cpp-python's server: text prompts only
                            break
                        raise self._http_error("/v1/completions", status, body)
                    else:
                        event: Event = payload
                        if event.error is not None:
                            raise self._http_error("/v1/completions", 500, event.error)
                        if not answered:  # the server has read the prompt
                            answered = True
                            yield Prefilled(len(prompt_ids))
                        report.update({k: v for k, v in (("generated", event.generated),
                                                         ("prompt_evaluated", event.prompt_evaluated),
                                                         ("cached", event.cached)) if v is not None})
                        for choice in event.choices:
                            if choice.is_token:
                                yield Text(choice.text, choice.ids)
                            reason = choice.finish_reason or reason
            finally:
                cancel.set()
            if retry:
                self._ids_ok, use_ids = False, False
                continue
            if not done and reason is None:
                if answered:  # words came, then the stream ended: the server went away mid-answer
                    raise self._went_away()
                # llama-cpp-python's server reports an error raised before the first token
                # (such as a prompt longer than its context) by just ending the stream.
                raise XGenError(f"{self.base_url}/v1/completions: the server closed the connection without "
                                f"answering (its log may tell; is the prompt longer than its context?)")
            if use_ids and self._ids_ok is None:
                self._ids_ok = True
            evaluated = report.get("prompt_evaluated")
            if evaluated is None and "cached" in report:
                evaluated = max(0, len(prompt_ids) - report["cached"])
            return ServerReport(out_of_budget=reason == "length", generated=report.get("generated"),
                                prompt_evaluated=evaluated)
