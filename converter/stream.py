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


class _Job:
    """One tensor being fetched: its span's buffer, filled by chunks on the pool."""

    def __init__(self, tensor: RemoteTensor, n_chunks: int):
        self.tensor = tensor
        self.buffer = bytearray(tensor.entry.span)
        self.pending = n_chunks
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.data: memoryview | None = None
        self.error: BaseException | None = None


class Prefetcher:
    """Yields (RemoteTensor, f32 array) in the given order, fetching ahead on a thread pool."""

    def __init__(self, reader: RangeReader, tensors: list[RemoteTensor], *, connections: int = CONNECTIONS,
                 chunk_bytes: int = CHUNK_BYTES, budget: int = BUDGET_BYTES,
                 tick: Callable[[], None] | None = None):
        self.reader, self.tensors = reader, tensors
        self.chunk_bytes, self.budget, self.tick = chunk_bytes, budget, tick
        self.pool = ThreadPoolExecutor(max(1, connections), thread_name_prefix="xgen-fetch")

    def __iter__(self) -> Iterator[tuple[RemoteTensor, np.ndarray]]:
        window: deque[_Job] = deque()
        ahead = 0  # bytes fetched or in flight, not yet handed to the converter
        upcoming = iter(self.tensors)
        nxt = next(upcoming, None)
        try:
            for _ in self.tensors:
                while nxt is not None and (not window or ahead + nxt.entry.span <= self.budget):
                    window.append(self._start(nxt))
                    ahead += nxt.entry.span
                    nxt = next(upcoming, None)
                job = window.popleft()
                while not job.done.wait(0.25):
                    if self.tick:
                        self.tick()
                ahead -= job.tensor.entry.span
                if job.error is not None:
                    raise job.error
                array = tensor_array(job.tensor.ref, job.data)
                job.buffer = job.data = None  # the array keeps the bytes alive as long as needed
                yield job.tensor, array
                del array
        finally:
            self.close()

    def close(self) -> None:
        self.reader.stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _start(self, tensor: RemoteTensor) -> _Job:
        span = tensor.entry.span
        bounds = list(range(0, span, self.chunk_bytes)) or [0]
        job = _Job(tensor, len(bounds))
        for first in bounds:
            self.pool.submit(self._fetch_chunk, job, first, min(span, first + self.chunk_bytes))
        return job

    def _fetch_chunk(self, job: _Job, first: int, last: int) -> None:
        entry = job.tensor.entry
        try:
            if job.error is None:
                self.reader.read_into(job.tensor.filename, entry.start + first, memoryview(job.buffer)[first:last])
        except BaseException as exc:  # handed to the consumer, which re-raises it in its thread
            job.error = job.error or exc
        with job.lock:
            job.pending -= 1
            last_one = job.pending == 0
        if last_one:
            if job.error is None:
                self._check(job)
            job.done.set()

    def _check(self, job: _Job) -> None:
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
            try:
                self.reader.read_into(job.tensor.filename, entry.start, memoryview(job.buffer))
            except BaseException as exc:  # handed to the consumer
                job.error = exc
                return
