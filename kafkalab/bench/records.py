"""Record-format benchmarks: how fast batches are encoded, and what each codec buys.

Plain dicts out; `kafkalab bench storage` formats them. The data set is seeded, so
compression ratios repeat from run to run (throughputs depend on the machine).
"""

from __future__ import annotations

import json
import random
import time

from kafkalab.records import CODEC_NAMES, BatchBuilder, codec_id, decode_batch

BATCH_SIZE = 16_384  # Kafka's default batch.size


def synthetic_values(count: int, seed: int = 42) -> list[bytes]:
    """JSON-like event values (~150-250 bytes), repeatable for a given seed."""
    rng = random.Random(seed)
    events = ["page_view", "click", "add_to_cart", "purchase", "search", "login"]
    countries = ["DE", "US", "FR", "IN", "BR", "JP", "NG", "GB"]
    out = []
    for i in range(count):
        event = {
            "event_id": f"{rng.getrandbits(64):016x}",
            "user_id": rng.randrange(100_000),
            "type": rng.choice(events),
            "page": f"/products/{rng.randrange(5_000)}",
            "country": rng.choice(countries),
            "amount": round(rng.uniform(1, 500), 2),
            "ts": 1_700_000_000_000 + i * rng.randrange(1, 50),
        }
        out.append(json.dumps(event, separators=(",", ":")).encode())
    return out


def _encode_records_per_s(seconds: float) -> tuple[float, int]:
    value = bytes(random.Random(1).getrandbits(8) for _ in range(100))
    records = batches = 0
    start = time.perf_counter()
    deadline = start + seconds
    ts = 1_700_000_000_000
    while True:
        builder = BatchBuilder(BATCH_SIZE)
        append = builder.append
        while append(None, value, None, ts):
            pass
        builder.build()
        records += builder.record_count
        batches += 1
        now = time.perf_counter()
        if now >= deadline:
            return records / (now - start), batches
        ts += 1


def _filled_builders(values: list[bytes]) -> list[BatchBuilder]:
    builders = [BatchBuilder(BATCH_SIZE)]
    for i, value in enumerate(values):
        key = b"user-%d" % (i % 1000)
        if not builders[-1].append(key, value, None, 1_700_000_000_000 + i):
            builders.append(BatchBuilder(BATCH_SIZE))
            builders[-1].append(key, value, None, 1_700_000_000_000 + i)
    return builders


def _codec_figures(builders: list[BatchBuilder], codec: int, seconds: float) -> dict:
    raw = sum(b.estimated_size for b in builders)
    built = [b.build(compression=codec) for b in builders]
    rounds = 0
    start = time.perf_counter()
    while True:
        for b in builders:
            b.build(compression=codec)
        rounds += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    encoded = sum(len(b) for b in built)
    start = time.perf_counter()
    for b in built:
        decode_batch(b)
    decode_s = time.perf_counter() - start
    return {
        "encode_mb_per_s": raw * rounds / elapsed / 1e6,
        "decode_mb_per_s": raw / decode_s / 1e6,
        "ratio": raw / encoded,
        "bytes_in": raw,
        "bytes_out": encoded,
    }


def bench_encode(seconds: float = 2.0) -> dict:
    """Records/s for 100-byte values (no key, headers or compression; append + build, CRC
    included) and, per codec, the compression ratio on the synthetic JSON data set plus
    throughput in MB/s of uncompressed batch: `encode_mb_per_s` times build() alone
    (records already appended: compression + CRC), `decode_mb_per_s` a full decode_batch.

    Half of `seconds` goes to the records/s figure, the rest is shared by the codecs.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    records_per_s, batches = _encode_records_per_s(seconds / 2)
    builders = _filled_builders(synthetic_values(5_000))
    per_codec = seconds / 2 / len(CODEC_NAMES)
    codecs = {name: _codec_figures(builders, codec_id(name), per_codec) for name in CODEC_NAMES.values()}
    return {
        "records_per_s": records_per_s,
        "value_bytes": 100,
        "batch_size": BATCH_SIZE,
        "batches": batches,
        "codecs": codecs,
    }
