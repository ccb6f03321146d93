"""A scripted OpenAI-compatible completion server on 127.0.0.1, for tests and benchmarks.

It answers like llama-server (GET /v1/models, GET /props with n_ctx, POST /v1/completions
streaming server-sent events), replays queued replies one event per word (or, for a
reply given as token ids, one event per token, with llama.cpp's empty text for a token
that ends inside a UTF-8 character, and end-of-text ending the reply), records every
request body, and can wait between events so a test can interrupt a reply midway.
It never stops at a stop string by itself (`honour_stop=False`): the client must.

Hostile mode: `hostile` is a function of the request body returning the raw bytes to
send as the completion stream (an iterable of blocks, sent as they come); `streamed`
receives, per finished stream, the bytes written before the client hung up.
It can report `total_slots` in /props, and counts the completions it streams at once
(`most_active`), so a test can see requests overlap.

Dying mode: `cut_after=N` closes the connection after N events of a reply, with no finish
reason and no [DONE], as a server that stops or crashes mid-answer; `cut_from` is the
first completion request (1-based) cut so, and every later one is cut too.
"""

from __future__ import annotations

import codecs
import json
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EOS = 50256


def token_pieces(ids: list[int]) -> list[str]:
    """One text per token up to end-of-text (decoded incrementally, as llama.cpp servers do)."""
    from models.tokenizer import XGenTokenizer

    tokenizer = XGenTokenizer(allow_download=False)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces = []
    for token in ids:
        if token == EOS:
            break
        pieces.append(decoder.decode(tokenizer.decode_bytes([token])))
    return pieces


class OpenAIDouble:
    def __init__(self, replies: list[str | list[int]] | None = None, *, n_ctx: int = 2048, delay: float = 0.0,
                 honour_stop: bool = False, hostile: Callable[[dict], Iterable[bytes]] | None = None,
                 total_slots: int | None = None, cut_after: int | None = None, cut_from: int = 1):
        self.cut_after = cut_after
        self.cut_from = cut_from
        self.replies: deque[str | list[int]] = deque(replies or [])
        self.hostile = hostile
        self.streamed: queue.Queue[int] = queue.Queue()  # bytes sent by each finished stream
        self.default_reply = "OK."
        self.n_ctx = n_ctx
        self.delay = delay  # seconds between streamed events
        self.honour_stop = honour_stop
        self.requests: list[dict] = []
        self.total_slots = total_slots  # reported by /props when set (llama-server --parallel)
        # Completions being streamed right now, and the most at any one time.
        self.active = 0
        self.most_active = 0
        self._count_lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "OpenAIDouble":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def prompt_texts(self) -> list[str]:
        """The prompt of every completion request, as text (token ids decoded)."""
        from models.tokenizer import XGenTokenizer

        tokenizer = XGenTokenizer(allow_download=False)
        return [tokenizer.decode(r["prompt"]) if isinstance(r["prompt"], list) else r["prompt"]
                for r in self.requests]

    def _next_reply(self) -> str | list[int]:
        return self.replies.popleft() if self.replies else self.default_reply


    def _handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _json(self, data: dict, status: int = 200) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._json({"object": "list", "data": [{"id": "double", "object": "model"}]})
                elif self.path == "/props":
                    props = {"n_ctx": double.n_ctx}
                    if double.total_slots is not None:
                        props["total_slots"] = double.total_slots
                    self._json(props)
                else:
                    self._json({"error": "not found"}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                double.requests.append(body)
                if self.path != "/v1/completions":
                    self._json({"error": "not found"}, 404)
                    return
                with double._count_lock:
                    reply = double._next_reply()
                    double.active += 1
                    double.most_active = max(double.most_active, double.active)
                try:
                    self._stream(body, reply)
                finally:
                    with double._count_lock:
                        double.active -= 1

            def _stream(self, body: dict, reply: str | list[int]) -> None:
                if double.hostile is not None:
                    self._send_raw(double.hostile(body))
                    return
                max_tokens = int(body.get("max_tokens") or 10**9)
                if isinstance(reply, list):  # token ids
                    pieces = token_pieces(reply)
                else:
                    if double.honour_stop:
                        for stop in body.get("stop") or []:
                            if stop in reply:
                                reply = reply[: reply.index(stop)]
                    pieces = re.findall(r"\S+\s*|\s+", reply)
                pieces = pieces[:max_tokens]
                reason = "length" if len(pieces) >= max_tokens else "stop"
                completions = sum(1 for r in double.requests if "prompt" in r)
                if double.cut_after is not None and completions >= double.cut_from:
                    pieces, reason = pieces[:double.cut_after], None  # then the connection closes
                self._send_raw(self._events(pieces, reason))

            def _events(self, pieces: list[str], reason: str | None) -> Iterable[bytes]:
                for piece in pieces:
                    if double.delay:
                        time.sleep(double.delay)
                    event = {"choices": [{"text": piece, "index": 0, "finish_reason": None}]}
                    yield f"data: {json.dumps(event)}\n\n".encode()
                if reason is None:
                    return
                end = {"choices": [{"text": "", "index": 0, "finish_reason": reason}]}
                yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode()

            def _send_raw(self, blocks: Iterable[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                sent = 0
                try:
                    for block in blocks:
                        self.wfile.write(block)
                        self.wfile.flush()
                        sent += len(block)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped the reply
                finally:
                    double.streamed.put(sent)

        return Handler
