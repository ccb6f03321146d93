"""A Hugging Face Hub stand-in on 127.0.0.1, for tests and benchmarks (never the real Hub).

It serves checkpoint folders as model repos with the endpoints huggingface_hub calls:
`GET /api/models/{repo}[/revision/{rev}]` (model_info), `GET /api/models/{repo}/tree/{rev}`
(snapshot_download's listing) and `HEAD`/`GET /{repo}/resolve/{rev}/{file}` with `Range`
support; errors carry the `X-Error-Code` header the Hub sends (RepoNotFound, GatedRepo).

Options for the scenarios the tests need:
- `rate`: the link's speed in bytes/s, shared by every connection (a token bucket);
  `connection_rate`: the speed of each connection on its own (a slow route per stream);
- `faults`: scripted failures of file transfers (`Fault`): an HTTP status, a connection
  reset after some bytes, corrupted bytes, or the server going silent (a dead network);
- counters of requests and bytes served per file, to check what a client fetched.

Point huggingface_hub at it with `HF_ENDPOINT=<server.url>` (and `HF_HUB_DISABLE_XET=1`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

PIECE = 64 << 10


@dataclass
class Repo:
    folder: Path
    commit: str = ""
    gated: bool = False
    listed_only: dict[str, int] = field(default_factory=dict)  # names (and sizes) listed, never served: hostile listings

    def __post_init__(self):
        self.folder = Path(self.folder)
        if not self.commit:
            digest = hashlib.sha1()
            for path in sorted(self.folder.iterdir()):
                digest.update(f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode())
            self.commit = digest.hexdigest()

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())


@dataclass
class Fault:
    """A scripted failure of the next `times` matching file GETs.

    kind: "status" (answer `status` instead of the data), "reset" (close the connection
    after `after` bytes of the body), "corrupt" (flip one byte at body offset `after`),
    "stall" (send `after` bytes, then nothing until the server stops: a dead network)."""

    kind: str
    file: str = ""  # substring of the file name; "" matches every file
    status: int = 503
    after: int = 0
    times: int = 1
    retry_after: int | None = None
    min_length: int = 0  # only requests for at least this many bytes (tensor data, not the index)

    def matches(self, name: str, length: int) -> bool:
        return self.times > 0 and self.file in name and length >= self.min_length


@dataclass
class Stats:
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, file, range header)
    bytes_sent: dict[str, int] = field(default_factory=dict)
    active: int = 0  # file bodies being sent now
    max_active: int = 0

    def file_bytes(self, suffix: str = "") -> int:
        return sum(n for name, n in self.bytes_sent.items() if name.endswith(suffix))


class HubStandIn:
    def __init__(self, repos: dict[str, Repo], *, rate: float | None = None, connection_rate: float | None = None):
        self.repos = repos
        self.rate, self.connection_rate = rate, connection_rate
        self.faults: list[Fault] = []
        self.stats = Stats()
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self._link_free_at = 0.0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="hub-stand-in", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "HubStandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def take_fault(self, name: str, length: int) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(name, length):
                    fault.times -= 1
                    return fault
        return None

    def wait_for_link(self, n: int, own_clock: list[float]) -> None:
        """Sleep as long as sending n bytes takes on the shared link and on this connection."""
        now = time.monotonic()
        until = now
        if self.rate:
            with self.lock:
                start = max(now, self._link_free_at)
                self._link_free_at = start + n / self.rate
                until = self._link_free_at
        if self.connection_rate:
            own_clock[0] = max(now, own_clock[0]) + n / self.connection_rate
            until = max(until, own_clock[0])
        if until > now:
            self.closing.wait(until - now)


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def _handler(hub: HubStandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        def _route(self, head: bool) -> None:
            path = unquote(urlparse(self.path).path)
            if m := _TREE.match(path):
                return self._tree(m["repo"], m["rev"])
            if m := _INFO.match(path):
                return self._info(m["repo"], m["rev"])
            if m := _RESOLVE.match(path):
                return self._file(m["repo"], m["rev"], m["file"], head)
            self._error(404, "EntryNotFound", "not found")

        def _repo(self, repo_id: str, rev: str | None) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found")
                return None
            if rev not in (None, "main", repo.commit):
                self._error(404, "RevisionNotFound", "Invalid rev id")
                return None
            return repo

        def _info(self, repo_id: str, rev: str | None) -> None:
            if (repo := self._repo(repo_id, rev)) is None:
                return
            siblings = [{"rfilename": p.name, "size": p.stat().st_size, "blobId": "0" * 40} for p in repo.files()]
            siblings += [{"rfilename": name, "size": size, "blobId": "0" * 40} for name, size in repo.listed_only.items()]
            self._json({"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                        "gated": "manual" if repo.gated else False, "disabled": False, "downloads": 0,
                        "likes": 0, "tags": [], "siblings": siblings})

        def _tree(self, repo_id: str, rev: str) -> None:
            if (repo := self._repo(repo_id, rev)) is None:
                return
            self._json([{"type": "file", "path": p.name, "size": p.stat().st_size, "oid": "0" * 40}
                        for p in repo.files()] + [{"type": "file", "path": name, "size": size, "oid": "0" * 40}
                                                  for name, size in repo.listed_only.items()])

        def _file(self, repo_id: str, rev: str, name: str, head: bool) -> None:
            if (repo := self._repo(repo_id, rev)) is None:
                return
            if repo.gated:
                return self._error(401, "GatedRepo", "Access to this model is restricted")
            path = repo.folder / name
            if not path.is_file():
                return self._error(404, "EntryNotFound", "Entry not found")
            size = path.stat().st_size
            with hub.lock:
                hub.stats.requests.append(("HEAD" if head else "GET", name, self.headers.get("Range", "")))
            start, end, status = 0, size, 200
            if (rng := self.headers.get("Range")) and (m := _RANGE.match(rng.strip())):
                start = int(m[1])
                end = min(size, int(m[2]) + 1) if m[2] else size
                if start >= size or end <= start:
                    return self._error(416, None, "Range not satisfiable")
                status = 206
            fault = None if head else hub.take_fault(name, end - start)
            if fault and fault.kind == "status":
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                return self._error(fault.status, None, "injected failure", extra)
            self.send_response(status)
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{repo.commit}-{name}"')
            self.send_header("X-Repo-Commit", repo.commit)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            if not head:
                with hub.lock:
                    hub.stats.active += 1
                    hub.stats.max_active = max(hub.stats.max_active, hub.stats.active)
                try:
                    self._send(path, name, start, end, fault)
                finally:
                    with hub.lock:
                        hub.stats.active -= 1

        def _send(self, path: Path, name: str, start: int, end: int, fault: Fault | None) -> None:
            clock = [0.0]
            sent = 0
            with open(path, "rb") as f:
                if fault is None:  # the kernel copies: the stand-in costs little CPU beside a benchmark
                    while start + sent < end and not hub.closing.is_set():
                        n = min(PIECE, end - start - sent)
                        hub.wait_for_link(n, clock)
                        try:
                            n = os.sendfile(self.connection.fileno(), f.fileno(), start + sent, n)
                        except OSError:
                            return
                        if n == 0:
                            return
                        sent += n
                        with hub.lock:
                            hub.stats.bytes_sent[name] = hub.stats.bytes_sent.get(name, 0) + n
                    return
                f.seek(start)
                while start + sent < end and not hub.closing.is_set():
                    piece = f.read(min(PIECE, end - start - sent))
                    if fault and fault.kind in ("reset", "stall") and sent + len(piece) > fault.after:
                        piece = piece[: fault.after - sent]
                    if fault and fault.kind == "corrupt" and sent <= fault.after < sent + len(piece):
                        i = fault.after - sent
                        piece = piece[:i] + bytes([piece[i] ^ 0xFF]) + piece[i + 1:]
                    hub.wait_for_link(len(piece), clock)
                    try:
                        self.wfile.write(piece)
                    except OSError:
                        return
                    sent += len(piece)
                    with hub.lock:
                        hub.stats.bytes_sent[name] = hub.stats.bytes_sent.get(name, 0) + len(piece)
                    if fault and fault.kind in ("reset", "stall") and sent >= fault.after:
                        if fault.kind == "stall":
                            hub.closing.wait()
                        self.close_connection = True
                        return

        def _json(self, payload) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, code: str | None, message: str, extra: dict | None = None) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
