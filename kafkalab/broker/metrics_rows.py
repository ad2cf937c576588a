"""The broker's metric rows, from its state: what the live views and `describe_*` read.

Pure: state and the time in, dict rows out. A "replica" row per hosted partition (offsets, ISR,
segments, and how far behind: a leader knows every follower's lag, a follower only the
leader's high watermark it last heard of) and one "broker" row (state, counters, latencies).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kafkalab.broker.partition import Partition


def replica_row(broker_id: int, part: Partition, now_ms: int) -> dict[str, Any]:
    if part.is_leader:
        # The leader knows every follower's lag: offsets behind and ms since caught up.
        lags = {b: part.follower_lag(b, now_ms) for b in part.followers}
        lag, lag_ms = 0, 0
    else:
        lags = {}
        # A follower only knows the leader's HW it last heard of.
        lag, lag_ms = max(0, part.high_watermark - part.log_end_offset), None
    return {
        "broker": broker_id, "topic": part.topic, "partition": part.partition, "is_leader": part.is_leader,
        "leader": part.leader, "leader_epoch": part.leader_epoch,
        "log_start_offset": part.log_start_offset, "log_end_offset": part.log_end_offset,
        "high_watermark": part.high_watermark, "last_stable_offset": part.last_stable_offset,
        "isr": list(part.isr), "segments": len(part.log.segments), "size_bytes": part.log.size_bytes,
        "lag_offsets": lag, "lag_ms": lag_ms,
        "follower_lag": {b: off for b, (off, _ms) in lags.items()},
        "follower_lag_ms": {b: ms for b, (_off, ms) in lags.items()},
    }


def replica_signature(part: Partition) -> tuple[Any, ...]:
    """What replica_row says apart from the clock, cheaply: equal signatures, equal rows but
    for the ms-since fields (a publisher need not build a row to see it has not changed)."""
    return (part.is_leader, part.leader, part.leader_epoch, part.log_start_offset, part.log_end_offset,
            part.high_watermark, part.last_stable_offset, tuple(part.isr), len(part.log.segments),
            part.log.size_bytes, tuple((b, st.log_end_offset) for b, st in part.followers.items()))


def broker_row(broker_id: int, *, fenced: bool, counters: dict[str, int], latencies_ms: Iterable[float],
               **extra: Any) -> dict[str, Any]:
    """latencies_ms: the latest request latencies (p50 and p99 of them)."""
    lat = sorted(latencies_ms)
    return {
        "broker": broker_id, "state": "fenced" if fenced else "running", **counters, **extra,
        "request_latency_ms_p50": lat[len(lat) // 2] if lat else 0.0,
        "request_latency_ms_p99": lat[int(len(lat) * 0.99)] if lat else 0.0,
    }
