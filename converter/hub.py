"""The Hugging Face Hub, through huggingface_hub: a repo's files at one commit, and range reads.

huggingface_hub does the endpoint (`HF_ENDPOINT`), the token (`huggingface-cli login` or
`HF_TOKEN`), revision -> commit resolution, file metadata, file URLs, its shared HTTP client
and retries with backoff on 429/5xx and connection errors (`http_stream_backoff`). What is
added here: a failure in the middle of a response body (a reset connection, a short read)
resumes from the bytes already received, with the same backoff, and every failure ends in
one line that says what to do.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from models.errors import XGenError
from models.paths import leaves_folder


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries per request, the first included
    base_wait: float = 1.0  # seconds before the first retry, doubled each time
    max_wait: float = 16.0
    timeout: float = 30.0  # seconds without a byte before a connection counts as lost


@dataclass(frozen=True)
class HubFile:
    name: str
    size: int


@dataclass(frozen=True)
class HubRepo:
    repo_id: str
    revision: str | None  # what the user asked for
    commit: str  # what it resolved to: every read uses this commit, so a resume reads the same bytes
    files: dict[str, HubFile]
    endpoint: str

    def url(self, filename: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo_id, filename, revision=self.commit, endpoint=self.endpoint)


def endpoint() -> str:
    """`HF_ENDPOINT` as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


@contextmanager
def hub_errors(repo_id: str, action: str = "download", network: bool = True) -> Iterator[None]:
    """huggingface_hub's (and, with `network`, the network's) errors as one-line XGenErrors."""
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    try:
        yield
    except GatedRepoError:
        raise XGenError(f"{repo_id} is gated: accept its licence on the Hub, then run "
                        "`huggingface-cli login` and try again") from None
    except RepositoryNotFoundError:
        raise XGenError(f"{repo_id}: no such model on the Hugging Face Hub (or it is private)") from None
    except RevisionNotFoundError:
        raise XGenError(f"{repo_id}: no such revision on the Hub") from None
    except HfHubHTTPError as exc:
        raise XGenError(f"{repo_id}: {action} failed ({str(exc).splitlines()[0]})") from None
    except (LocalEntryNotFoundError, *network_errors()) as exc:
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            # Not the network: the cache folder is read-only, not ours, or full.
            where = exc.filename or "the Hugging Face cache"
            raise XGenError(f"{repo_id}: cannot write {where}: {exc.strerror}; free some space or set "
                            "HF_HUB_CACHE to a writable folder") from None
        if not network and not isinstance(exc, LocalEntryNotFoundError):
            raise
        raise XGenError(f"{repo_id}: cannot reach the Hugging Face Hub ({type(exc).__name__}); "
                        "check the network and run the same command again") from None


DISK_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def resolve(repo_id: str, revision: str | None = None) -> HubRepo:
    """The repo's files and sizes at the commit `revision` resolves to (one API call)."""
    from huggingface_hub import HfApi

    url = endpoint()
    with hub_errors(repo_id):
        info = HfApi(endpoint=url).model_info(repo_id, revision=revision, files_metadata=True)
    if not info.sha:
        raise XGenError(f"{repo_id}: the Hub did not say which commit {revision or 'main'} is")
    names = [s.rfilename for s in info.siblings or []]
    check_listed_names(repo_id, names)
    files = {s.rfilename: HubFile(s.rfilename, int(s.size or 0)) for s in info.siblings or []}
    return HubRepo(repo_id, revision, info.sha, files, url)


def check_listed_names(repo_id: str, names: list[str]) -> None:
    """Refuse a listing with a file name that would land outside the download folder
    (`../x`, `/etc/x`): huggingface_hub stops at it with a ValueError traceback."""
    for name in names:
        # Stricter than a checkpoint index: no empty or "." parts, no NUL, either.
        parts = name.replace("\\", "/").split("/")
        if leaves_folder(name) or "\0" in name or any(part in ("", ".") for part in parts):
            raise XGenError(f"{repo_id}: the Hub lists a file named {name!r}, which would be written outside "
                            "the download folder; refused (is this the repository you meant?)")


class TransferError(XGenError):
    """The transfer kept failing (network, 429, 5xx): what was written so far is worth keeping."""


class TransientError(Exception):
    """A failure in the middle of a transfer (reset connection, timeout, short body): resumed."""


class RangeReader:
    """Byte ranges of the repo's files at its commit.

    huggingface_hub's `http_stream_backoff` retries 429 (honouring Retry-After) and 5xx
    answers with exponential backoff; connection errors and bodies cut short are retried
    here, with the same backoff, asking only for the bytes still missing. Thread-safe:
    huggingface_hub's client is shared and each call is its own request. `stop` (a
    threading.Event) interrupts transfers and waits.
    """

    def __init__(self, repo: HubRepo, retry: RetryPolicy | None = None, stop: threading.Event | None = None):
        self.repo = repo
        self.retry = retry or RetryPolicy()
        self.stop = stop or threading.Event()
        self._lock = threading.Lock()
        self.fetched = 0  # bytes received, for progress (bytes fetched again count again)
        self.retries = 0

    def read(self, filename: str, start: int, end: int) -> bytes:
        buf = bytearray(end - start)
        self.read_into(filename, start, memoryview(buf))
        return bytes(buf)

    def read_into(self, filename: str, start: int, out: memoryview) -> None:
        """Fill `out` with the file's bytes [start, start + len(out))."""
        got = [0]  # bytes in `out` so far, kept across attempts: a retry asks only for the rest
        attempt, wait = 1, self.retry.base_wait
        while got[0] < len(out):
            if self.stop.is_set():
                raise KeyboardInterrupt
            try:
                self._request(filename, start, out, got)
                if got[0] < len(out):
                    raise TransientError(f"the connection closed after {got[0]} of {len(out)} bytes")
            except (TransientError, *network_errors()) as exc:
                if attempt >= self.retry.attempts:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise TransferError(f"{self.repo.repo_id}: reading {filename} kept failing ({reason}); "
                                        "check the network and run the same command again to resume") from None
                with self._lock:
                    self.retries += 1
                if self.stop.wait(wait):
                    raise KeyboardInterrupt from None
                attempt, wait = attempt + 1, min(self.retry.max_wait, wait * 2)

    def _request(self, filename: str, start: int, out: memoryview, got: list[int]) -> None:
        """One range request for what `out` still lacks (from got[0] on); got[0] counts what arrives."""
        from huggingface_hub.errors import HfHubHTTPError
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_stream_backoff

        first = start + got[0]
        headers = build_hf_headers(headers={"Range": f"bytes={first}-{start + len(out) - 1}",
                                            "Accept-Encoding": "identity"})
        try:
            with http_stream_backoff(
                    "GET", self.repo.url(filename), headers=headers, follow_redirects=True,
                    timeout=self.retry.timeout, max_retries=self.retry.attempts - 1, retry_on_exceptions=(),
                    base_wait_time=self.retry.base_wait, max_wait_time=self.retry.max_wait) as response:
                if response.status_code >= 400:
                    response.read()
                    hf_raise_for_status(response)
                self._receive(response, filename, first, out, got)
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (408, 429) or status >= 500:  # still failing after huggingface_hub's retries
                raise TransferError(f"{self.repo.repo_id}: the Hub kept answering HTTP {status} for {filename}; "
                                    "wait a moment and run the same command again to resume") from None
            with hub_errors(self.repo.repo_id, f"reading {filename}", network=False):
                raise

    def _receive(self, response, filename: str, first: int, out: memoryview, got: list[int]) -> None:
        if response.status_code != 206 and not (first == 0 and response.status_code == 200):
            raise XGenError(f"{self.repo.repo_id}: the server ignored a range request for {filename} "
                            f"(HTTP {response.status_code}); use --keep-source to download it whole")
        for chunk in response.iter_bytes():  # as received: a cut-off body keeps what came
            n = min(len(chunk), len(out) - got[0])
            out[got[0]: got[0] + n] = chunk[:n]
            got[0] += n
            with self._lock:
                self.fetched += n
            if got[0] >= len(out):
                break
            if self.stop.is_set():
                raise KeyboardInterrupt
