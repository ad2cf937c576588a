"""Checkers and reference functions for lab 03 (Producer internals)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from checkers import Feedback, call_learner, not_answered, right, wrong

from kafkalab.client.config import producer_config
from kafkalab.errors import ConfigError


def records_per_batch_reference(rate_per_s: float, linger_ms: float, batch_size: int, record_bytes: int) -> int:
    """The exercise's model of a partition's batches under a steady stream: the records that
    arrive while the batch lingers (rate x linger), at least the one that opened it, at most
    what fits in batch.size."""
    arrived = int(rate_per_s * linger_ms / 1000)
    fits = max(1, batch_size // record_bytes)
    return min(max(1, arrived), fits)


# (rate records/s, linger.ms, batch.size, record bytes)
BATCH_CASES: list[tuple[int, int, int, int]] = [
    (1, 50, 16384, 100),        # a trickle: each batch leaves alone after linger.ms
    (1000, 5, 16384, 100),      # 5 records
    (1000, 100, 16384, 100),    # 100 would arrive, 163 fit
    (10_000, 100, 16384, 100),  # 1000 would arrive, only 163 fit
    (500, 0, 16384, 100),       # no lingering: one record per batch
    (50, 10, 16384, 100),       # 0.5 arrive: still the one record
    (20_000, 5, 16384, 1000),   # 100 would arrive, 16 fit
    (200, 1000, 1024, 100),     # 200 would arrive, 10 fit
    (2000, 20, 65536, 50),
    (1500, 5, 16384, 100),      # 7.5 arrive: 7 whole records
]


def check_records_per_batch(fn: Callable[[float, float, int, int], Any]) -> Feedback:
    """Exercise 1: records_per_batch(rate_per_s, linger_ms, batch_size, record_bytes)."""
    for rate, linger, size, rec in BATCH_CASES:
        done, got = call_learner(fn, rate, linger, size, rec)
        if not done:
            return got
        want = records_per_batch_reference(rate, linger, size, rec)
        if got == want:
            continue
        case = (f"records_per_batch({rate}, {linger}, {size}, {rec}) returned {got!r}, expected {want}")
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return wrong(f"{case}: return a number of records.")
        if got != int(got):
            return wrong(f"{case}: a batch holds whole records; round down (int() or //).")
        if got == min(max(1, rate * linger), max(1, size // rec)) or got == max(1, rate * linger):
            return wrong(f"{case}: linger.ms is in milliseconds and the rate is per second: divide "
                         "rate x linger by 1000.")
        if got == max(1, int(rate * linger / 1000)) and got > size // rec:
            return wrong(f"{case}: a batch is sent as soon as it is full, without waiting out linger.ms: "
                         "at most batch_size // record_bytes records fit.")
        if got == max(1, size // rec) and want < got:
            return wrong(f"{case}: the batch does not wait to be full: it goes when linger.ms runs out, "
                         "full or not. Take rate x linger.ms / 1000 records, capped at "
                         "batch_size // record_bytes.")
        if got == 0 or got < 1:
            return wrong(f"{case}: even with no lingering a batch holds the record that opened it: at least 1.")
        return wrong(f"{case}: take rate x linger.ms / 1000 records (at least 1), capped at "
                     "batch_size // record_bytes.")
    return right("linger.ms trades latency for fuller batches, and batch.size caps them: whichever "
                 "comes first closes the batch.")


def _safety_problem(cfg: Mapping[str, Any]) -> str | None:
    """Why a producer config may lose, duplicate or reorder acknowledged records (None: safe)."""
    try:
        eff = producer_config(dict(cfg))
    except ConfigError as e:
        return f"the producer would refuse this config: {e}"
    if eff["acks"] == 0:
        return ("acks=0: the producer does not even wait for the leader; a record can be lost with "
                "nobody told. Use acks='all'.")
    if eff["acks"] == 1:
        return ("acks=1: the leader alone has the record when it answers; if it dies before a follower "
                "copies it, an acknowledged record is lost (lab 05). Use acks='all'.")
    if eff["retries"] == 0:
        return ("retries=0: a leader change or a timeout fails the send instead of retrying it on the "
                "new leader. Leave retries at its default (bounded by delivery.timeout.ms).")
    if not eff["enable.idempotence"]:
        return ("enable.idempotence=false: a retry after a lost response writes the batch a second time, "
                "and with several requests in flight a retried batch can land after a later one. "
                "Keep idempotence on.")
    return None


def check_safe_producer_config(cfg: Any) -> Feedback:
    """Exercise 2: a producer config that neither loses nor duplicates nor reorders on retry."""
    if cfg is None:
        return not_answered()
    if not isinstance(cfg, Mapping):
        return wrong("give a dict of producer settings, for example {'acks': 'all'}.")
    problem = _safety_problem(cfg)
    if problem:
        return wrong(problem)
    return right("acks=all + idempotence (which needs retries > 0 and at most 5 requests in flight): "
                 "no acknowledged record lost while an in-sync replica survives, none written twice, "
                 "none reordered. Pair it with the topic's min.insync.replicas=2.")
