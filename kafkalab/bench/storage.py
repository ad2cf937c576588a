"""Append throughput of Log.append next to a raw os.write baseline, measured in one run.

Both sides write the same 64 KiB RecordBatch bytes to real files in a temp dir; the Log side
also parses and CRC-checks each batch, assigns offsets, indexes and rolls segments
(segment.bytes = 64 MiB). Rounds alternate raw/log so drift in the machine hits both; the
result reports medians and log/raw.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from kafkalab.records.batch import encode_batch
from kafkalab.storage.log import Log


def _batch(batch_bytes: int) -> bytes:
    n = max(batch_bytes // 1024, 1)
    value = b"x" * 1000
    data = encode_batch([(None, value, [], 0)] * n)
    return data


def _raw_round(path: str, data: bytes, seconds: float) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    written, start = 0, time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            for _ in range(16):
                os.write(fd, data)
            written += 16 * len(data)
    finally:
        elapsed = time.perf_counter() - start
        os.close(fd)
        os.unlink(path)
    return written / elapsed


def _log_round(directory: str, data: bytes, seconds: float) -> tuple[float, int]:
    log = Log(directory, {"segment.bytes": 64 << 20}, now_ms=0)
    written, start = 0, time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            for _ in range(16):
                log.append(data, leader_epoch=0, now_ms=0)
            written += 16 * len(data)
        elapsed = time.perf_counter() - start
        segments = len(log.segments)
    finally:
        log.close(flush=False)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
    return written / elapsed, segments


def bench_append(seconds: float = 3.0, batch_bytes: int = 65536, rounds: int = 5) -> dict:
    """Median MB/s of raw os.write and of Log.append over alternating rounds, and log/raw."""
    data = _batch(batch_bytes)
    per_round = seconds / (2 * rounds)
    raw, logged, segments = [], [], 0
    with tempfile.TemporaryDirectory(prefix="kafkalab-bench-") as tmp:
        for _ in range(rounds):
            raw.append(_raw_round(os.path.join(tmp, "raw.bin"), data, per_round))
            rate, segs = _log_round(os.path.join(tmp, "bench-0"), data, per_round)
            logged.append(rate)
            segments = max(segments, segs)
    raw_mb, log_mb = statistics.median(raw) / 1e6, statistics.median(logged) / 1e6
    return {
        "batch_bytes": len(data),
        "rounds": rounds,
        "raw_MBps": round(raw_mb, 1),
        "log_MBps": round(log_mb, 1),
        "ratio": round(log_mb / raw_mb, 3) if raw_mb else 0.0,
        "log_batches_per_s": round(log_mb * 1e6 / len(data)),
        "max_segments_per_round": segments,
    }


if __name__ == "__main__":
    print(bench_append())
