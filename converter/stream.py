"""A checkpoint on the Hub read tensor by tensor, fetched ahead of the converter.

`RemoteCheckpoint` indexes the `.bin` shards over range requests (central directory and
`data.pkl` only). `Prefetcher` then fetches tensors in the order the converter writes them,
on a few connections, while the converter quantizes the previous ones: the bytes in flight
are bounded (`budget`), so memory stays at a few tensors, and every tensor's bytes are
checked against its zip entry's size and CRC-32 before the converter sees them (a mismatch
is fetched again, then refused).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from converter.hub import HubRepo, RangeReader
from converter.zipindex import ChecksumError, TensorRef, ZipEntry, entry_data, read_index, tensor_array
from models.checkpoint import is_weight
from models.errors import XGenError

CHUNK_BYTES = 16 << 20  # one range request; a tensor larger than this is fetched on several connections
CONNECTIONS = 4
BUDGET_BYTES = 512 << 20  # fetched but not yet converted (one larger tensor is always allowed)
CHECK_ATTEMPTS = 3  # fetches of a tensor whose bytes fail the CRC-32 before giving up


@dataclass(frozen=True)
class RemoteTensor:
    name: str  # HF name
    filename: str  # the shard in the repo
    entry: ZipEntry
    ref: TensorRef


class RemoteCheckpoint:
    """The weights of a pickle-shard checkpoint on the Hub, indexed with a few range requests."""

    def __init__(self, reader: RangeReader, repo: HubRepo):
        self.reader, self.repo = reader, repo
        shards = weight_shards(reader, repo)
        self.tensors: dict[str, RemoteTensor] = {}
        for shard in shards:
            size = repo.files[shard].size
            index = read_index(lambda a, b, s=shard: reader.read(s, a, b), size, f"{repo.repo_id}/{shard}")
            for name, ref in index.tensors.items():
                if is_weight(name):
                    self.tensors[name] = RemoteTensor(name, shard, index.entry(ref), ref)

    def names(self) -> list[str]:
        return list(self.tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].ref.shape


def weight_shards(reader: RangeReader, repo: HubRepo) -> list[str]:
    """The `.bin` shards named by the index (or the single `pytorch_model.bin`)."""
    index = "pytorch_model.bin.index.json"
    if index in repo.files:
        raw = reader.read(index, 0, repo.files[index].size)
        try:
            weight_map = json.loads(raw)["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise XGenError(f"{repo.repo_id}/{index}: not a valid checkpoint index ({exc})") from None
        missing = [s for s in shards if s not in repo.files]
        if missing:
            raise XGenError(f"{repo.repo_id}: shard {missing[0]} listed in {index} is not in the repo")
        return shards
    if "pytorch_model.bin" in repo.files:
        return ["pytorch_model.bin"]
    raise XGenError(f"{repo.repo_id}: no pytorch_model*.bin weights to stream")


class Job:
    """One tensor being fetched: its span's buffer, filled by chunks on the pool.

    The converter can start on the data before all of it is in: `wait_data(n)` returns once
    the first n bytes of the entry's data have arrived (chunks complete out of order; what
    counts is the unbroken prefix). Nothing is final until `verified()` (size and CRC-32
    checked, fetched again if needed: then `refetched` is set and earlier reads are void).
    """

    def __init__(self, tensor: RemoteTensor, bounds: list[tuple[int, int]]):
        self.tensor = tensor
        self.buffer = bytearray(tensor.entry.span)
        self.bounds = bounds
        self.complete = [False] * len(bounds)
        self.prefix = 0  # chunks complete from the first on
        self.pending = len(bounds)
        self.cond = threading.Condition()
        self.done = threading.Event()
        self.header_len: int | None = None
        self.data: memoryview | None = None
        self.error: BaseException | None = None
        self.refetched = False

    def chunk_done(self, i: int) -> bool:
        """Record chunk i; True when it was the last one."""
        with self.cond:
            self.complete[i] = True
            while self.prefix < len(self.bounds) and self.complete[self.prefix]:
                self.prefix += 1
            if self.header_len is None and self.prefix:
                self.header_len = local_header_length(self.buffer, self.bounds[self.prefix - 1][1])
            self.pending -= 1
            self.cond.notify_all()
            return self.pending == 0

    def available(self) -> int:
        """Bytes of data (after the local header) arrived without a gap."""
        if self.header_len is None:
            return 0
        end = self.bounds[self.prefix - 1][1] if self.prefix else 0
        return max(0, min(self.tensor.entry.size, end - self.header_len))

    def wait_data(self, n: int, tick: Callable[[], None] | None = None) -> int:
        """Block until n data bytes are in or the fetch ended; returns the bytes available."""
        with self.cond:
            while self.available() < n and not self.done.is_set():
                self.cond.wait(0.25)
                if tick:
                    tick()
            return self.available()

    def verified(self, tick: Callable[[], None] | None = None) -> memoryview:
        """The whole checked data; raises the fetch's error."""
        while not self.done.wait(0.25):
            if tick:
                tick()
        if self.error is not None:
            raise self.error
        return self.data

    def finish(self) -> None:
        with self.cond:
            self.done.set()
            self.cond.notify_all()

    def array(self, tick: Callable[[], None] | None = None) -> np.ndarray:
        return tensor_array(self.tensor.ref, self.verified(tick))


def local_header_length(buffer, have: int) -> int | None:
    """Length of the zip local header at the start of `buffer`, once `have` bytes cover it."""
    if have < 30:
        return None
    name_len, extra_len = int.from_bytes(buffer[26:28], "little"), int.from_bytes(buffer[28:30], "little")
    return 30 + name_len + extra_len if have >= 30 + name_len + extra_len else None


class Prefetcher:
    """Hands out Jobs in the given order, fetching ahead on a thread pool within a byte budget."""

    def __init__(self, reader: RangeReader, tensors: list[RemoteTensor], *, connections: int = CONNECTIONS,
                 chunk_bytes: int = CHUNK_BYTES, budget: int = BUDGET_BYTES):
        self.reader, self.tensors = reader, tensors
        self.chunk_bytes, self.budget = chunk_bytes, budget
        self.pool = ThreadPoolExecutor(max(1, connections), thread_name_prefix="xgen-fetch")
        self.window: deque[Job] = deque()
        self.ahead = 0  # bytes fetched or in flight, not yet handed to the converter
        self.upcoming = iter(tensors)
        self.nxt = next(self.upcoming, None)
        self.fill()  # start at once: the caller may still be writing the header

    def fill(self) -> None:
        while self.nxt is not None and (not self.window or self.ahead + self.nxt.entry.span <= self.budget):
            self.window.append(self._start(self.nxt))
            self.ahead += self.nxt.entry.span
            self.nxt = next(self.upcoming, None)

    def __iter__(self) -> Iterator[Job]:
        try:
            for _ in self.tensors:
                self.fill()
                job = self.window.popleft()
                self.ahead -= job.tensor.entry.span
                self.fill()
                yield job
        finally:
            self.close()

    def close(self) -> None:
        self.reader.stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _start(self, tensor: RemoteTensor) -> Job:
        span = tensor.entry.span
        bounds = [(a, min(span, a + self.chunk_bytes)) for a in range(0, span, self.chunk_bytes)] or [(0, 0)]
        job = Job(tensor, bounds)
        for i in range(len(bounds)):
            self.pool.submit(self._fetch_chunk, job, i)
        return job

    def _fetch_chunk(self, job: Job, i: int) -> None:
        first, last = job.bounds[i]
        entry = job.tensor.entry
        try:
            if job.error is None and last > first:
                self.reader.read_into(job.tensor.filename, entry.start + first, memoryview(job.buffer)[first:last])
        except BaseException as exc:  # handed to the consumer, which re-raises it in its thread
            job.error = job.error or exc
        if job.chunk_done(i):
            if job.error is None:
                self._check(job)
            job.finish()

    def _check(self, job: Job) -> None:
        """Size and CRC-32 against the zip entry; a mismatch is fetched again (whole), then refused."""
        label = f"{self.reader.repo.repo_id}/{job.tensor.filename}"
        entry = job.tensor.entry
        for attempt in range(1, CHECK_ATTEMPTS + 1):
            try:
                job.data = entry_data(entry, job.buffer, label)
                return
            except ChecksumError as exc:
                if attempt == CHECK_ATTEMPTS:
                    job.error = ChecksumError(f"{exc} after {CHECK_ATTEMPTS} downloads of {job.tensor.name}; "
                                              "the file on the Hub or the connection is corrupting data, "
                                              "nothing was written")
                    return
            job.refetched = True
            try:
                self.reader.read_into(job.tensor.filename, entry.start, memoryview(job.buffer))
            except BaseException as exc:  # handed to the consumer
                job.error = exc
                return
