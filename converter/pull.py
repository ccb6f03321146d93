"""Hub checkpoint -> GGUF with no copy of the shards on disk: range reads, overlapped, resumable.

The shards' central directories and `data.pkl` are read first (a few small range requests
each); then every tensor is fetched in GGUF order by `Prefetcher` (ahead of the converter,
on several connections, each tensor's bytes checked against its CRC-32), permuted,
quantized and appended to `.NAME.partial`, and the resume record is updated once the
tensor is on disk. Disk use beyond the output is the record (a few KiB).

Interrupted (Ctrl+C, kill, the network gone for good), the partial and its record stay, and
the same command continues where it stopped, with the same bytes as an uninterrupted run.
Bad data (a CRC mismatch that persists, a checkpoint that is not XGen) or a full disk leave
nothing behind.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q

from converter.convert import (ConversionResult, PlannedTensor, Progress, ProgressFn, TensorSink, check_free_space,
                               checked_args, disk_errors, estimate_output_bytes, plan_tensors, write_header,
                               xgen_vocab)
from converter.hub import HubRepo, RangeReader, RetryPolicy, TransferError, resolve
from converter.quant import get_file_type, quantize, tensor_nbytes
from converter.resume import ResumeRecord, discard, record_path, sha256_prefix, usable_record
from converter.stream import BUDGET_BYTES, CHUNK_BYTES, CONNECTIONS, Job, Prefetcher, RemoteCheckpoint
from converter.tensors import match_tensors, permute_rotary, to_gguf_array
from models.atomic import output_target, partial_path, writer_lock
from models.config import ModelArgs
from models.errors import XGenError
from models.registry import Variant


ROWS_BYTES = 16 << 20  # f32 rows quantized at a time while a tensor arrives


class PullInterrupted(KeyboardInterrupt):
    """Ctrl+C (or SIGTERM) during a pull; the message says what was kept for the next run."""


def pull(repo_id: str | HubRepo, out: str | Path, file_type: str = "q4_k_m", *, revision: str | None = None,
         force: bool = False, threads: int | None = None, variant: Variant | None = None,
         name: str | None = None, progress: ProgressFn | None = None,
         notify: Callable[[str], None] | None = None, connections: int = CONNECTIONS,
         chunk_bytes: int = CHUNK_BYTES, budget: int = BUDGET_BYTES,
         retry: RetryPolicy | None = None, measure_error: bool = False) -> ConversionResult:
    """Stream the Hub checkpoint `repo_id` (at `revision`, or an already resolved HubRepo) into `out`."""
    started = time.perf_counter()
    ftype = get_file_type(file_type)
    out = output_target(out, force=force)  # the file a link names; a folder or device is refused
    with writer_lock(out):  # a second pull of the same model is refused, not mixed into this one
        repo = repo_id if isinstance(repo_id, HubRepo) else resolve(repo_id, revision)
        repo_id = repo.repo_id
        reader = RangeReader(repo, retry, threading.Event())
        args = checked_args(_remote_config(reader, repo), repo_id, variant, notify)
        checkpoint = RemoteCheckpoint(reader, repo)
        sources = match_tensors({n: checkpoint.shape(n) for n in checkpoint.names()}, args)
        planned = plan_tensors(sources, ftype, args.n_layers)
        check_free_space(out.parent, estimate_output_bytes(planned, xgen_vocab(args.vocab_size)))
        name = name or repo_id.split("/")[-1]

        fingerprint = _fingerprint(repo, ftype.name, variant, name, args)
        tmp = partial_path(out)
        record = usable_record(out, fingerprint, [p.source.gguf_name for p in planned])
        first = len(record.tensors) if record else 0
        remaining = [checkpoint.tensors[p.source.hf_name] for p in planned[first:]]
        total_bytes = sum(t.entry.span for t in remaining)
        base = reader.fetched
        done = [first]

        def report(tensor=None) -> None:
            if progress:
                progress(Progress(done[0], len(planned), min(total_bytes, reader.fetched - base), total_bytes, tensor))

        try:
            # The first tensors are on their way while the header and the vocabulary are written.
            fetched = Prefetcher(reader, remaining, connections=connections, chunk_bytes=chunk_bytes, budget=budget)
            if record is None:
                discard(out)  # another pull's leftovers, or none: start over
                with disk_errors(out):
                    header_end = write_header(tmp, args, ftype, variant, name, planned)
                record = ResumeRecord(fingerprint, header_end, sha256_prefix(tmp, header_end))
                record.save(out)
            elif notify:
                notify(f"resuming: {first} of {len(planned)} tensors are already in {tmp.name}")
            with disk_errors(out), open(tmp, "r+b") as f:
                f.truncate(record.end)
                f.seek(record.end)
                sink = TensorSink(f, planned, threads, measure_error, first=first)
                for job, p in zip(fetched, planned[first:]):
                    assert job.tensor.name == p.source.hf_name
                    quantized = quantize_as_it_arrives(job, p, args, threads, report)
                    data = job.array(report)  # size and CRC-32 checked
                    if job.refetched:
                        quantized = None  # made from bytes that failed the check: quantize the good ones
                    if quantized is None or measure_error:
                        data = to_gguf_array(p.source, data, args)  # permuted; a copy for q and k
                    p = sink.write(data, quantized)
                    del data, quantized
                    f.flush()
                    os.fsync(f.fileno())  # on disk before the record says so
                    record.tensors.append((p.source.gguf_name, f.tell(), sink.last_crc))
                    record.save(out)
                    done[0] = sink.next
                    report(p)
            os.replace(tmp, out)
            record_path(out).unlink(missing_ok=True)
        except KeyboardInterrupt:
            reader.stop.set()
            if record is None:
                discard(out)
                raise
            raise PullInterrupted(f"interrupted; {len(record.tensors)} of {len(planned)} tensors are kept in "
                                  f"{tmp}: run the same command again to resume") from None
        except TransferError as exc:
            reader.stop.set()
            kept = len(record.tensors) if record else 0
            raise TransferError(f"{exc} ({kept} of {len(planned)} tensors kept)") from None
        except BaseException:
            reader.stop.set()
            discard(out)  # bad data, a full disk, a bug: nothing half-made stays
            raise
        return ConversionResult(out, ftype.name, time.perf_counter() - started, out.stat().st_size, planned,
                                sink.errors)


def _remote_config(reader: RangeReader, repo: HubRepo) -> ModelArgs:
    if "config.json" not in repo.files:
        raise XGenError(f"{repo.repo_id}: no config.json; is this a Hugging Face model?")
    raw = reader.read("config.json", 0, repo.files["config.json"].size)
    try:
        cfg = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise XGenError(f"{repo.repo_id}/config.json: cannot read it as JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise XGenError(f"{repo.repo_id}/config.json: expected a JSON object")
    return ModelArgs.from_hf_config(cfg, source=f"{repo.repo_id}/config.json")


def _fingerprint(repo: HubRepo, file_type: str, variant: Variant | None, name: str, args: ModelArgs) -> dict:
    """Everything the output's bytes depend on: a record with another fingerprint is not resumed."""

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "?"

    return {"repo": repo.repo_id, "commit": repo.commit, "type": file_type, "name": name,
            "variant": variant.name if variant else None, "args": args.as_dict(),
            "files": {n: f.size for n, f in sorted(repo.files.items())},
            "xgen-local": version("xgen-local"), "gguf": version("gguf")}


def is_streamable(repo: HubRepo) -> bool:
    """Pickle shards stream; a repo that ships safetensors is downloaded whole (--keep-source)."""
    return not any(n.endswith(".safetensors") for n in repo.files) and (
        "pytorch_model.bin.index.json" in repo.files or "pytorch_model.bin" in repo.files)


def quantize_as_it_arrives(job: Job, p: PlannedTensor, args: ModelArgs, threads: int | None,
                           tick: Callable[[], None]) -> np.ndarray | None:
    """Quantize a tensor's rows while the rest of it is still arriving; None if it cannot be.

    Rows are quantized independently (ggml's row functions), so quantizing blocks of rows as
    they come gives the same bytes as quantizing the whole; q/k rows are permuted within a
    head, so their blocks are whole heads. The bytes are final only once the caller has
    had the job verified (CRC-32)."""
    ref = job.tensor.ref
    if p.qtype in (Q.F32, Q.F16) or len(ref.shape) != 2 or ref.storage_type != "FloatStorage" \
            or ref.offset != 0 or ref.stride != (ref.shape[1], 1):
        return None
    rows, cols = ref.shape
    row_bytes = 4 * cols
    name = p.source.gguf_name
    heads = args.n_heads if name.endswith("attn_q.weight") else \
        args.n_kv_heads if name.endswith("attn_k.weight") else 0
    group = rows // heads if heads else 1
    step = max(group, (ROWS_BYTES // row_bytes) // group * group)
    out = np.empty((rows, tensor_nbytes((1, cols), p.qtype)), dtype=np.uint8)
    done = 0
    while done < rows:
        have = job.wait_data(min(rows, done + step) * row_bytes, tick) // row_bytes
        upto = rows if have >= rows else have // group * group
        if upto <= done:
            if job.done.is_set():
                return None  # the fetch failed: the caller raises its error
            continue
        block = np.frombuffer(job.buffer, dtype="<f4", count=(upto - done) * cols,
                              offset=job.header_len + done * row_bytes).reshape(upto - done, cols)
        if heads:
            block = permute_rotary(block, (upto - done) // group)
        out[done:upto] = quantize(block, p.qtype, threads)
        done = upto
    return out
