"""Retention (cleanup.policy=delete): which whole segments go, as pure functions of now_ms.

Kafka (UnifiedLog.deletableSegments/deleteSegments) deletes whole segments from the oldest and
moves the log start offset to the first remaining segment:

- retention.ms: a segment goes once its largest timestamp is older than now - retention.ms
  (stops at the first segment still within retention, so offsets stay contiguous);
- retention.bytes: while the log is bigger than retention.bytes, the oldest segments go, as
  long as dropping one does not take the log below the limit;
- log start: a segment wholly below log_start_offset (DeleteRecords) goes whatever the policy.

Only segments wholly below the high watermark go (the log start offset never passes it), and
the active segment is no exception: an expired, non-empty active segment below the HW goes too,
after a new empty segment is rolled (a log always keeps one segment). Only an empty active
segment stays.
"""

from __future__ import annotations

from collections.abc import Callable

from kafkalab.storage.log import Log
from kafkalab.storage.segment import LogSegment


def _deletable(log: Log, high_watermark: int | None,
               predicate: Callable[[LogSegment, LogSegment | None], bool]) -> list[LogSegment]:
    """The oldest segments, in order, for which predicate holds, each wholly below the HW."""
    hw = log.log_end_offset if high_watermark is None else high_watermark
    segs = log.segments
    out = []
    for i, seg in enumerate(segs):
        nxt = segs[i + 1] if i + 1 < len(segs) else None
        upper = nxt.base_offset if nxt is not None else log.log_end_offset
        if nxt is None and seg.size == 0:
            break  # an empty active segment is what remains
        if hw < upper or not predicate(seg, nxt):
            break
        out.append(seg)
    return out


def breached_log_start(log: Log, high_watermark: int | None = None) -> list[LogSegment]:
    return _deletable(log, high_watermark,
                      lambda seg, nxt: nxt is not None and nxt.base_offset <= log.log_start_offset)


def breached_retention_ms(log: Log, now_ms: int, high_watermark: int | None = None) -> list[LogSegment]:
    limit = log.config["retention.ms"]
    if limit < 0:
        return []
    return _deletable(log, high_watermark, lambda seg, nxt: now_ms - seg.largest_timestamp > limit)


def breached_retention_bytes(log: Log, high_watermark: int | None = None) -> list[LogSegment]:
    limit = log.config["retention.bytes"]
    if limit < 0 or log.size_bytes < limit:
        return []
    excess = log.size_bytes - limit

    def over(seg: LogSegment, nxt: LogSegment | None) -> bool:
        nonlocal excess
        if excess - seg.size < 0:
            return False
        excess -= seg.size
        return True
    return _deletable(log, high_watermark, over)


def deletable_segments(log: Log, now_ms: int, high_watermark: int | None = None
                       ) -> tuple[list[LogSegment], str | None]:
    """The segments retention would delete now, and the reason (None if nothing).
    high_watermark defaults to the log end offset (a log on its own, outside a partition)."""
    for reason, segs in (
        ("log start offset", lambda: breached_log_start(log, high_watermark)),
        ("retention.ms", lambda: breached_retention_ms(log, now_ms, high_watermark) if _deletes(log) else []),
        ("retention.bytes", lambda: breached_retention_bytes(log, high_watermark) if _deletes(log) else []),
    ):
        found = segs()
        if found:
            return found, reason
    return [], None


def _deletes(log: Log) -> bool:
    return "delete" in log.config["cleanup.policy"]


def apply_retention(log: Log, now_ms: int, high_watermark: int | None = None) -> dict:
    """Delete what retention allows (repeatedly, all three rules); returns what happened."""
    deleted: list[str] = []
    reasons: list[str] = []
    freed = 0
    while True:
        segs, reason = deletable_segments(log, now_ms, high_watermark)
        if not segs:
            break
        if segs[-1] is log.active_segment:
            log.roll(now_ms)  # a log keeps one segment: the new, empty active one
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
