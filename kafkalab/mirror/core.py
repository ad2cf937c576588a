"""The replicator's rules, pure: no sockets, no clock (times come in as `now_ms`).

- `OffsetSyncRule` (MirrorSourceTask's PartitionState): when a copied record's
  (upstream offset, downstream offset) pair must be written to the offset-syncs topic.
- `OffsetSyncStore` (OffsetSyncStore.translateDownstream): a source-cluster group offset
  translated to the target cluster from the newest sync at or below it.
- `CheckpointRule` (MirrorCheckpointTask): which translated offsets become checkpoints, and
  which may be committed for a group on the target (sync.group.offsets.enabled).
- `Intervals`: which periodic jobs are due.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

TP = tuple[str, int]


class OffsetSyncRule:
    """Per source partition. A sync is due for the first record copied, when the last sync's
    translation would be `offset.lag.max` or more records behind, when the upstream offsets
    skip (compaction, transaction markers) and when the downstream offset went backwards."""

    def __init__(self, offset_lag_max: int):
        self.offset_lag_max = offset_lag_max
        self._previous_upstream: dict[TP, int] = {}
        self._previous_downstream: dict[TP, int] = {}
        self._last_sync_downstream: dict[TP, int] = {}

    def update(self, tp: TP, upstream: int, downstream: int) -> bool:
        prev_up = self._previous_upstream.get(tp)
        first = prev_up is None
        # a group at `upstream + 1` translates to one past the last sync: hence the + 1
        stale = not first and downstream - (self._last_sync_downstream[tp] + 1) >= self.offset_lag_max
        skipped = not first and upstream - prev_up != 1
        truncated = not first and downstream < self._previous_downstream[tp]
        due = first or stale or skipped or truncated
        if due:
            self._last_sync_downstream[tp] = downstream
        self._previous_upstream[tp] = upstream
        self._previous_downstream[tp] = downstream
        return due


@dataclass(frozen=True)
class OffsetSync:
    topic: str
    partition: int
    upstream_offset: int
    downstream_offset: int


class OffsetSyncStore:
    """Every sync read back from the offset-syncs topic, per partition, in upstream order."""

    def __init__(self) -> None:
        self._syncs: dict[TP, list[tuple[int, int]]] = {}

    def add(self, sync: OffsetSync) -> None:
        rows = self._syncs.setdefault((sync.topic, sync.partition), [])
        pair = (sync.upstream_offset, sync.downstream_offset)
        if rows and rows[-1][0] >= pair[0]:
            # a restarted replicator syncs again from its resume point: keep the newest pair
            del rows[bisect.bisect_left(rows, (pair[0], -1)):]
        rows.append(pair)

    def translate(self, tp: TP, upstream_group_offset: int) -> int | None:
        """The downstream offset a group at `upstream_group_offset` (the next record it would
        read) may resume from without skipping anything; None when no sync lies at or below.

        From the newest sync (u, d) with u <= the group offset: d if the group sits exactly at
        u, else d + 1 — the group has read u, and everything past u is not located downstream,
        so it may re-read up to offset.lag.max records there but never miss one."""
        rows = self._syncs.get(tp)
        if not rows or upstream_group_offset < 0:
            return None
        i = bisect.bisect_right(rows, (upstream_group_offset, float("inf"))) - 1
        if i < 0:
            return None
        upstream, downstream = rows[i]
        return downstream if upstream == upstream_group_offset else downstream + 1


@dataclass(frozen=True)
class Checkpoint:
    group: str
    topic: str  # the remote topic, on the target
    partition: int
    upstream_offset: int
    downstream_offset: int
    metadata: str = ""


class CheckpointRule:
    """Checkpoints of one flow. A checkpoint is emitted when a group's translated offset
    changed since the last one; a checkpoint never moves a group backwards."""

    def __init__(self, source_alias: str):
        self.source_alias = source_alias
        self._last: dict[tuple[str, TP], Checkpoint] = {}

    def checkpoints(self, group: str, committed: dict[TP, int], store: OffsetSyncStore) -> list[Checkpoint]:
        out = []
        for (topic, partition), upstream in sorted(committed.items()):
            downstream = store.translate((topic, partition), upstream)
            if downstream is None:
                continue
            remote = f"{self.source_alias}.{topic}"
            cp = Checkpoint(group, remote, partition, upstream, downstream)
            last = self._last.get((group, (topic, partition)))
            if last is not None and (last.upstream_offset, last.downstream_offset) == (upstream, downstream):
                continue
            if last is not None and downstream < last.downstream_offset:
                continue  # the group was reset backwards on the source: do not chase it
            self._last[(group, (topic, partition))] = cp
            out.append(cp)
        return out

    def latest(self, group: str) -> list[Checkpoint]:
        return [cp for (g, _), cp in sorted(self._last.items()) if g == group]

    @staticmethod
    def offsets_to_sync(checkpoints: list[Checkpoint], target_committed: dict[TP, int]) -> dict[TP, int]:
        """What sync.group.offsets may commit on the target: a translated offset for a
        partition the target group has not passed (a consumer that already moved on in the
        target is never rewound). Whether the group has active members is the coordinator's
        to say: it refuses a simple commit over a live group (UNKNOWN_MEMBER_ID)."""
        out = {}
        for cp in checkpoints:
            tp = (cp.topic, cp.partition)
            if target_committed.get(tp, -1) < cp.downstream_offset:
                out[tp] = cp.downstream_offset
        return out


class Intervals:
    """Periodic jobs by name: `due(name, now_ms)` is True once per interval (first call too)."""

    def __init__(self, intervals_ms: dict[str, int]):
        self.intervals_ms = dict(intervals_ms)
        self._next: dict[str, int] = {}

    def due(self, name: str, now_ms: int) -> bool:
        interval = self.intervals_ms[name]
        if interval < 0:
            return False  # Kafka's -1: disabled
        if now_ms >= self._next.get(name, now_ms):
            self._next[name] = now_ms + interval
            return True
        return False
