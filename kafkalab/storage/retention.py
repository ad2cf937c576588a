"""Retention (cleanup.policy=delete): which whole segments go, as pure functions of now_ms.

Kafka deletes whole segments from the oldest, never the active one, and moves the log start
offset to the first remaining segment:

- retention.ms: a segment goes once its largest timestamp is older than now - retention.ms
  (stops at the first segment still within retention, so offsets stay contiguous);
- retention.bytes: while the log is bigger than retention.bytes, the oldest segments go, as
  long as dropping one does not take the log below the limit;
- log start: a segment wholly below log_start_offset (DeleteRecords) goes whatever the policy.
"""

from __future__ import annotations

from kafkalab.storage.log import Log
from kafkalab.storage.segment import LogSegment


def _candidates(log: Log) -> list[LogSegment]:
    return log.segments[:-1]  # never the active segment


def breached_log_start(log: Log) -> list[LogSegment]:
    segs = log.segments
    out = []
    for seg, nxt in zip(segs, segs[1:], strict=False):
        if nxt.base_offset > log.log_start_offset:
            break
        out.append(seg)
    return out


def breached_retention_ms(log: Log, now_ms: int) -> list[LogSegment]:
    limit = log.config["retention.ms"]
    if limit < 0:
        return []
    out = []
    for seg in _candidates(log):
        if now_ms - seg.largest_timestamp > limit:
            out.append(seg)
        else:
            break
    return out


def breached_retention_bytes(log: Log) -> list[LogSegment]:
    limit = log.config["retention.bytes"]
    if limit < 0:
        return []
    excess = log.size_bytes - limit
    out = []
    for seg in _candidates(log):
        if excess - seg.size < 0:
            break
        out.append(seg)
        excess -= seg.size
    return out


def deletable_segments(log: Log, now_ms: int) -> tuple[list[LogSegment], str | None]:
    """The segments retention would delete now, and the reason (None if nothing)."""
    for reason, segs in (
        ("log start offset", breached_log_start(log)),
        ("retention.ms", breached_retention_ms(log, now_ms) if _deletes(log) else []),
        ("retention.bytes", breached_retention_bytes(log) if _deletes(log) else []),
    ):
        if segs:
            return segs, reason
    return [], None


def _deletes(log: Log) -> bool:
    return "delete" in log.config["cleanup.policy"]


def apply_retention(log: Log, now_ms: int) -> dict:
    """Delete what retention allows (repeatedly, all three rules); returns what happened."""
    deleted: list[str] = []
    reasons: list[str] = []
    freed = 0
    while True:
        segs, reason = deletable_segments(log, now_ms)
        if not segs:
            break
        freed += sum(s.size for s in segs)
        deleted += [s.log_path for s in segs]
        reasons.append(reason)
        log.delete_segments(segs, now_ms)
    return {
        "deleted_segments": deleted,
        "reasons": reasons,
        "bytes_freed": freed,
        "log_start_offset": log.log_start_offset,
    }
