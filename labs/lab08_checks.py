"""Checkers and reference functions for lab 08 (Performance)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from checkers import Feedback, call_learner, not_answered, right, wrong

# -- Exercise 1: produce requests per second -------------------------------------------------


def requests_per_second_reference(rate_per_s: float, linger_ms: float, batch_size: int,
                                  record_bytes: int) -> float:
    """Produce requests per second a broker receives from one producer writing `rate_per_s`
    records/s to one partition: one batch per request, and lab 03's model of a batch (the
    records that arrive while it lingers, as whole records, at least 1, at most what fits)."""
    arrived = int(rate_per_s * linger_ms / 1000)
    fits = max(1, batch_size // record_bytes)
    per_batch = min(max(1, arrived), fits)
    return rate_per_s / per_batch


# (rate records/s, linger.ms, batch.size, record bytes)
REQUEST_CASES: list[tuple[int, int, int, int]] = [
    (1000, 0, 16384, 100),        # no lingering: a request per record
    (1000, 10, 16384, 100),       # 10 records per batch
    (20_000, 5, 16384, 100),      # 100 arrive, 163 fit
    (100_000, 5, 16384, 100),     # 500 arrive, only 163 fit: batch.size is the limit
    (50, 10, 16384, 100),         # 0.5 arrive: each batch still carries the record that opened it
    (200_000, 20, 1_048_576, 1000),  # 4000 arrive, 1048 fit
    (3000, 5, 1000, 4000),        # a record larger than batch.size travels alone
    (1500, 5, 16384, 100),        # 7.5 arrive: 7 whole records
]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-6)


def check_requests_per_second(fn: Callable[[float, float, int, int], Any]) -> Feedback:
    """Exercise 1: requests_per_second(rate_per_s, linger_ms, batch_size, record_bytes) -> float."""
    for rate, linger, size, rec in REQUEST_CASES:
        done, got = call_learner(fn, rate, linger, size, rec)
        case = f"requests_per_second({rate}, {linger}, {size}, {rec})"
        if not done:
            if got.ok is False and "ZeroDivisionError" in got.message:
                return wrong(f"{case} divided by zero. A batch always holds at least the record that "
                             "opened it (even with linger.ms=0, even when the record is bigger than "
                             "batch.size), so records per batch is never below 1.")
            return got
        want = requests_per_second_reference(rate, linger, size, rec)
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return wrong(f"{case} returned {got!r}: return a number of requests per second.")
        if _close(got, want):
            continue
        case = f"{case} returned {got!r}, expected {want:.4g}"
        per_batch = min(max(1, int(rate * linger / 1000)), max(1, size // rec))
        if _close(got, per_batch):
            return wrong(f"{case}: that is the number of records per batch. The broker receives one "
                         "request per batch, so divide the rate by it.")
        if _close(got, rate / min(max(1, rate * linger), max(1, size // rec))) or \
                _close(got, rate / max(1, rate * linger)):
            return wrong(f"{case}: linger.ms is in milliseconds and the rate per second: the records "
                         "arriving during one linger are rate x linger_ms / 1000.")
        if _close(got, rate / max(1, int(rate * linger / 1000))):
            return wrong(f"{case}: a batch leaves as soon as it is full, without waiting out linger.ms: "
                         "at most batch_size // record_bytes records per batch.")
        if _close(got, rate / min(max(1, rate * linger / 1000), max(1, size // rec))):
            return wrong(f"{case}: a batch holds whole records: take int(rate x linger_ms / 1000) "
                         "before capping it.")
        if _close(got, rate / max(1, size // rec)):
            return wrong(f"{case}: batches do not wait until they are full; linger.ms sends them "
                         "earlier when records arrive slowly.")
        return wrong(f"{case}: records per batch = int(rate x linger_ms / 1000), at least 1, at most "
                     "max(1, batch_size // record_bytes); requests per second = rate / that.")
    return right("at 1000 records/s, linger.ms=0 costs the broker 1000 requests/s, linger.ms=10 "
                 "only 100: the same records in a tenth of the requests, each paying its fixed costs "
                 "(a network round trip, a request header, a log append, an acknowledgement) once.")


# -- Exercise 2: figures from a transactions bench row ---------------------------------------


def txn_figures_reference(row: Mapping[str, Any]) -> tuple[float, float]:
    """(records per second, milliseconds per transaction) of a `kafkalab bench transactions` row."""
    return row["records"] / row["seconds"], row["seconds"] * 1000 / row["transactions"]


TXN_ROWS: list[dict[str, Any]] = [
    {"mode": "transactional", "records_per_txn": 10, "transactions": 30, "records": 300,
     "seconds": 0.15},
    {"mode": "transactional", "records_per_txn": 100, "transactions": 3, "records": 300,
     "seconds": 0.048},
    {"mode": "transactional", "records_per_txn": 1000, "transactions": 2, "records": 2000,
     "seconds": 0.25},
    {"mode": "transactional", "records_per_txn": 1, "transactions": 200, "records": 200,
     "seconds": 1.0},
]


def check_txn_figures(fn: Callable[[dict[str, Any]], Any]) -> Feedback:
    """Exercise 2: txn_figures(row) -> (records_per_s, ms_per_txn)."""
    for row in TXN_ROWS:
        done, got = call_learner(fn, dict(row))
        if not done:
            return got
        want = txn_figures_reference(row)
        shown = {k: row[k] for k in ("records_per_txn", "transactions", "records", "seconds")}
        try:
            rps, ms = got
            rps, ms = float(rps), float(ms)
        except (TypeError, ValueError):
            return wrong(f"txn_figures({shown}) returned {got!r}: return two numbers, "
                         "(records_per_s, ms_per_txn).")
        if _close(rps, want[0]) and _close(ms, want[1]):
            continue
        case = f"txn_figures({shown}) returned ({rps:.4g}, {ms:.4g}), expected ({want[0]:.4g}, {want[1]:.4g})"
        if _close(rps, want[1]) and _close(ms, want[0]):
            return wrong(f"{case}: the two numbers are swapped: records per second first.")
        if not _close(rps, want[0]):
            if _close(rps, row["seconds"] / row["records"]):
                return wrong(f"{case}: that is seconds per record; records per second is records / seconds.")
            if _close(rps, row["transactions"] / row["seconds"]):
                return wrong(f"{case}: that counts transactions per second; the first figure is records per second.")
            return wrong(f"{case}: records per second = records / seconds.")
        if _close(ms, want[1] / 1000):
            return wrong(f"{case}: that is seconds per transaction; multiply by 1000 for milliseconds.")
        if _close(ms, row["seconds"] * 1000 / row["records"]):
            return wrong(f"{case}: that is milliseconds per record; divide by the number of "
                         "transactions instead: each transaction pays its commit once, whatever its size.")
        if _close(ms, row["seconds"] * 1000 / row["records_per_txn"]):
            return wrong(f"{case}: divide the time by the number of transactions ('transactions'), "
                         "not by the records in each one.")
        return wrong(f"{case}: milliseconds per transaction = seconds x 1000 / transactions.")
    return right("a commit costs about the same whatever the transaction holds (AddPartitionsToTxn, "
                 "EndTxn, markers), so records per second grows with records per transaction: "
                 "batching again.")


# -- Exercise 3: pick the settings -----------------------------------------------------------

CLICK_RATE = 20_000          # records/s
CLICK_BYTES = 300            # bytes per record
LATENCY_BUDGET_MS = 50       # extra delay the readers accept
MAX_REQUEST_SIZE = 1_048_576  # Kafka's max.request.size default: no batch can be larger
PRODUCER_DEFAULTS: dict[str, Any] = {"acks": "all", "linger.ms": 5, "batch.size": 16384,
                                     "compression.type": "none", "enable.idempotence": True}
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def _settings_problem(cfg: Mapping[str, Any]) -> str | None:
    unknown = sorted(set(cfg) - set(PRODUCER_DEFAULTS))
    if unknown:
        return (f"unknown or out-of-scope keys {unknown}: this exercise is about "
                f"{sorted(PRODUCER_DEFAULTS)}.")
    eff = {**PRODUCER_DEFAULTS, **cfg}
    acks = str(eff["acks"]).lower()
    if acks not in ("all", "-1"):
        return (f"acks={eff['acks']!r}: the events must survive a broker crash, and that needs acks=all "
                "(with the topic's min.insync.replicas=2). Durability is not the knob to turn for "
                "throughput: with full batches, acks=all costs one follower fetch per batch, not per record.")
    if eff["enable.idempotence"] in (False, "false", "False"):
        return ("enable.idempotence=false: retries could then write a batch twice. Idempotence costs "
                "nothing measurable (a producer id and a sequence number per batch); keep it on.")
    try:
        linger = float(eff["linger.ms"])
        size = int(eff["batch.size"])
    except (TypeError, ValueError):
        return "linger.ms and batch.size are numbers (milliseconds and bytes)."
    if linger > LATENCY_BUDGET_MS:
        return (f"linger.ms={eff['linger.ms']}: a batch may wait that long before it is even sent, "
                f"more than the {LATENCY_BUDGET_MS} ms the readers accept (and sending, replicating "
                "and fetching add their own milliseconds). Stay below the budget.")
    if linger < 5:
        return (f"linger.ms={eff['linger.ms']}: with almost no lingering, batches leave as soon as the "
                "sender is free, often with a few records each. You have a latency budget: spend "
                "some of it (5-20 ms) on fuller batches.")
    arriving = CLICK_RATE * linger / 1000 * CLICK_BYTES
    if size > MAX_REQUEST_SIZE:
        return (f"batch.size={size}: a batch cannot be larger than a request (max.request.size, "
                f"{MAX_REQUEST_SIZE} bytes by default), and a huge batch.size only reserves memory.")
    if size < arriving:
        return (f"batch.size={size}: during linger.ms={eff['linger.ms']} about {arriving / 1000:.0f} KB "
                f"arrive ({CLICK_RATE} records/s x {CLICK_BYTES} bytes), so batches fill up and leave "
                "long before linger.ms runs out: linger.ms does nothing. Raise batch.size to at least "
                "what one linger brings (64-256 KiB is common for busy topics).")
    codec = str(eff["compression.type"]).lower()
    if codec not in CODECS:
        return f"compression.type={eff['compression.type']!r}: choose one of {', '.join(CODECS)}."
    if codec == "none":
        return ("compression.type='none': repetitive JSON shrinks 3-4x in batches of hundreds of records "
                "(section 3), and the broker stores and serves the compressed batch as it is: less "
                "network, disk and page cache for a little producer CPU. Pick lz4 or zstd.")
    return None


def check_settings(cfg: Any) -> Feedback:
    """Exercise 3: producer settings for the click stream."""
    if cfg is None:
        return not_answered()
    if not isinstance(cfg, Mapping):
        return wrong("give a dict of producer settings, for example {'linger.ms': 10}.")
    problem = _settings_problem(cfg)
    if problem:
        return wrong(problem)
    eff = {**PRODUCER_DEFAULTS, **cfg}
    per_batch = min(max(1, int(CLICK_RATE * float(eff["linger.ms"]) / 1000)),
                    max(1, int(eff["batch.size"]) // CLICK_BYTES))
    codec = str(eff["compression.type"]).lower()
    note = {"gzip": " gzip compresses well but costs the most CPU per byte; zstd gives about the same "
                    "ratio for much less.",
            "snappy": " snappy is cheap; lz4 is about as cheap and usually compresses a little better."}
    return right(f"about {per_batch} records per batch: {CLICK_RATE // per_batch} requests/s instead of "
                 f"{CLICK_RATE:,}, each batch compressed once and stored and served as it is, for at most "
                 f"{eff['linger.ms']} ms of extra delay; acks=all and idempotence keep every record "
                 f"safe.{note.get(codec, '')}")
