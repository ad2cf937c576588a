"""The history checker: what a workload's History says about Kafka's guarantees. Pure.

Anomalies, one row each in CheckResult.frame:

- lost:       acknowledged, never read back (if another record now sits at its offset, the
              detail says so: the log was truncated and the offset reused).
- moved:      acknowledged at one offset, read back only at others.
- duplicated: read back more than once (the row names the extra copy).
- reordered:  within a partition, a producer's acknowledged record read after an acknowledged
              one it sent later.
- unexpected: read back, but this workload never sent it.

Not anomalies, but counted: records whose delivery failed (or never got a report) yet are in
the log. Kafka allows that: the producer cannot tell a lost request from a lost answer.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from kafkalab.lazy_pandas import pd
from kafkalab.workloads.history import ACKED, FAILED, PENDING, History, Read

KINDS = ("lost", "duplicated", "moved", "reordered", "unexpected")
COLUMNS = ["kind", "record", "partition", "offset", "detail"]


@dataclass
class CheckResult:
    frame: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        c = self.counts
        return (f"acked {c['acked']}, read {c['read']}: "
                + ", ".join(f"{k} {c[k]}" for k in KINDS))

    @property
    def ok(self) -> bool:
        """No anomaly of any kind."""
        return all(self.counts[k] == 0 for k in KINDS)

    def __getattr__(self, name: str) -> int:
        # result.lost, result.duplicated, ... read as the counts.
        counts = self.__dict__.get("counts", {})
        if name in counts:
            return counts[name]
        raise AttributeError(name)

    def __str__(self) -> str:
        c = self.counts
        return (f"{self.summary} (failed {c['failed']}, of which written {c['failed_written']}; "
                f"no report {c['pending']}, of which written {c['pending_written']})")


def _where(r: Read) -> str:
    return f"p{r.partition}@{r.offset}"


def check(history: History) -> CheckResult:
    """Compare what was acknowledged with what was read back."""
    rows: list[dict[str, object]] = []

    def add(kind: str, record: str | None, partition: int | None, offset: int | None, detail: str) -> None:
        rows.append({"kind": kind, "record": record, "partition": partition, "offset": offset,
                     "detail": detail})

    sent = {s.id: s for s in history.sent}
    at: dict[tuple[int, int], Read] = {}
    copies: dict[str, list[Read]] = defaultdict(list)
    for r in sorted(history.read, key=lambda r: (r.partition, r.offset)):
        at[(r.partition, r.offset)] = r
        rid = r.id
        if rid is None or rid not in sent:
            what = f"value {r.value!r}" if rid is None else f"id {rid}"
            add("unexpected", rid, r.partition, r.offset, f"{what} was never sent")
            continue
        copies[rid].append(r)

    for rid, reads in copies.items():
        for extra in reads[1:]:
            add("duplicated", rid, extra.partition, extra.offset,
                f"read {len(reads)} times: {', '.join(map(_where, reads))}")

    for s in history.sent:
        if s.status != ACKED:
            continue
        reads = copies.get(s.id, [])
        there = at.get((s.partition, s.offset)) if s.partition is not None and s.offset is not None else None
        acked_at = f"p{s.partition}@{s.offset}"
        if not reads:
            now = ("nothing was read there" if there is None
                   else f"{there.id or 'a foreign value'} was read there instead")
            add("lost", s.id, s.partition, s.offset, f"acknowledged at {acked_at}; {now}")
        elif not any((r.partition, r.offset) == (s.partition, s.offset) for r in reads):
            instead = "" if there is None else f" ({there.id or 'a foreign value'} is there)"
            add("moved", s.id, s.partition, s.offset,
                f"acknowledged at {acked_at}{instead}, read at {', '.join(map(_where, reads))}")

    # Order: per partition and producer, over acknowledged records (Kafka promises nothing
    # about where a failed send lands) and their first copies (duplicates are reported above).
    seen_first: set[str] = set()
    last: dict[tuple[int, int], tuple[int, Read]] = {}  # (partition, producer) -> highest seq so far
    for r in sorted(history.read, key=lambda r: (r.partition, r.offset)):
        rid = r.id
        if r.producer is None or r.seq is None or rid is None or rid in seen_first:
            continue
        if rid not in sent or sent[rid].status != ACKED:
            continue
        seen_first.add(rid)
        key = (r.partition, r.producer)
        prev = last.get(key)
        if prev is not None and r.seq < prev[0]:
            add("reordered", rid, r.partition, r.offset,
                f"sent before {prev[1].id} but read after it (at {_where(prev[1])})")
        else:
            last[key] = (r.seq, r)

    # Built column by column so that a missing record id stays None rather than NaN.
    frame = pd.DataFrame({c: pd.Series([row[c] for row in rows], dtype=object if c in ("record", "detail", "kind")
                                       else "Int64") for c in COLUMNS})
    counts = {k: int((frame.kind == k).sum()) for k in KINDS}
    statuses = [s.status for s in history.sent]
    counts.update(
        sent=len(history.sent), acked=statuses.count(ACKED), read=len(history.read),
        failed=statuses.count(FAILED), pending=statuses.count(PENDING),
        failed_written=sum(s.status == FAILED and s.id in copies for s in history.sent),
        pending_written=sum(s.status == PENDING and s.id in copies for s in history.sent),
    )
    return CheckResult(frame, counts)
