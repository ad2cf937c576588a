"""The replicated log under the KRaft quorum: the interface RaftNode needs, and two of them.

The quorum's log holds whole RecordBatch v2 batches, as `__cluster_metadata` does in Kafka:
each batch's partition_leader_epoch is the epoch of the leader that wrote it, and the first
batch of every epoch is a LEADER_CHANGE control batch. Snapshots are opaque bytes from the
state machine, named by the offset they end at and the epoch of the record before it
(Kafka's `<end offset>-<epoch>.checkpoint`).

- `InMemoryRaftLog`: for tests and the simulation (a "disk" that survives a simulated kill).
- `StorageRaftLog`: over kafkalab.storage.Log, so the quorum persists with the storage engine.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from kio.schema.leader_change_message.v0.data import LeaderChangeMessage, Voter
from kio.serial import entity_reader, entity_writer

from kafkalab.protocol.bounds import check_bounds
from kafkalab.records.batch import decode_batch, encode_batch
from kafkalab.records.header import parse_header, set_base_offset, set_partition_leader_epoch
from kafkalab.records.scan import iter_batches

__all__ = [
    "LEADER_CHANGE",
    "CommittedBatch",
    "InMemoryRaftLog",
    "RaftLog",
    "SnapshotId",
    "StorageRaftLog",
    "decode_committed",
    "encode_data_batch",
    "encode_leader_change",
    "parse_leader_change",
]

LEADER_CHANGE = 2  # control record type, after ABORT (0) and COMMIT (1)
NO_EPOCH = -1


class SnapshotId(NamedTuple):
    end_offset: int  # the snapshot holds the state of every record below this offset
    epoch: int  # the epoch of the record at end_offset - 1

    @property
    def file_name(self) -> str:
        return f"{self.end_offset:020d}-{self.epoch:010d}.checkpoint"


class RaftLog(Protocol):
    """What RaftNode needs from its log. Offsets are Kafka's; end offsets are exclusive."""

    @property
    def log_start_offset(self) -> int: ...

    @property
    def log_end_offset(self) -> int: ...

    @property
    def last_fetched_epoch(self) -> int:
        """Epoch of the last batch, else of the latest snapshot, else 0 (an empty log)."""
        ...

    def append_as_leader(self, batch: bytes, epoch: int) -> tuple[int, int]:
        """Give the batch offsets from the log end offset, stamp `epoch`; (first, last)."""
        ...

    def append_as_follower(self, batches: bytes) -> tuple[int, int]:
        """Append the leader's batches as they are (base offset == log end offset)."""
        ...

    def read(self, offset: int, max_bytes: int) -> bytes:
        """Whole batches from the one starting at `offset` (at least one if any)."""
        ...

    def truncate_to(self, offset: int) -> None: ...

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(largest epoch <= `epoch`, where it ends) as OffsetForLeaderEpoch answers; (-1, -1)
        if the log knows no such epoch."""
        ...

    def epoch_of(self, offset: int) -> int:
        """The epoch of the batch holding `offset` (log start <= offset < log end)."""
        ...

    def latest_snapshot(self) -> SnapshotId | None: ...

    def read_snapshot(self, snapshot_id: SnapshotId) -> bytes | None: ...

    def create_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """Store a snapshot and drop the log prefix below its end offset."""
        ...

    def load_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """A follower's copy of the leader's snapshot: store it, empty the log, restart it at
        the snapshot's end offset."""
        ...

    def flush(self) -> None:
        """Make everything appended durable (called before the node says it has it)."""
        ...


# -- batches --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    """Data records of one committed batch, as handed to the state machine."""

    base_offset: int
    last_offset: int
    epoch: int
    values: tuple[bytes, ...]


def encode_data_batch(values: list[bytes] | tuple[bytes, ...], timestamp_ms: int) -> bytes:
    return encode_batch([(None, v, None, timestamp_ms) for v in values])


_lcm_writer = entity_writer(LeaderChangeMessage)
_lcm_reader = entity_reader(LeaderChangeMessage)


def encode_leader_change(leader_id: int, voters: list[int], granting: list[int], timestamp_ms: int) -> bytes:
    """The control batch a new leader writes first in its epoch (KIP-595's LeaderChange)."""
    import io

    msg = LeaderChangeMessage(
        version=0,
        leader_id=leader_id,
        voters=tuple(Voter(voter_id=v) for v in sorted(voters)),
        granting_voters=tuple(Voter(voter_id=v) for v in sorted(granting)),
    )
    buf = io.BytesIO()
    _lcm_writer(buf, msg)
    key = (0).to_bytes(2, "big") + LEADER_CHANGE.to_bytes(2, "big")
    return encode_batch([(key, buf.getvalue(), None, timestamp_ms)], control=True)


def parse_leader_change(value: bytes) -> LeaderChangeMessage:
    check_bounds(LeaderChangeMessage, value)  # the value came from a peer's log
    msg, _ = _lcm_reader(memoryview(value).toreadonly(), 0)
    return msg


def decode_committed(data: bytes, start: int, end: int) -> tuple[list[CommittedBatch], int, int]:
    """Whole batches of `data` in [start, end): (data batches, next offset, epoch of the last
    batch taken, -1 if none). Control batches advance the offset but carry no values."""
    out: list[CommittedBatch] = []
    nxt, epoch = start, NO_EPOCH
    for pos, h in iter_batches(data):
        if h.base_offset < start:
            continue
        if h.next_offset > end:
            break
        if not h.is_control:
            b = decode_batch(data, pos)
            out.append(CommittedBatch(h.base_offset, h.last_offset, h.partition_leader_epoch,
                                      tuple(r.value or b"" for r in b.records)))
        nxt, epoch = h.next_offset, h.partition_leader_epoch
    return out, nxt, epoch


# -- in memory ------------------------------------------------------------------------------


def _end_offset_for_epoch(entries: list[tuple[int, int]], requested: int, leo: int) -> tuple[int, int]:
    # Same answer as storage.epoch_cache.LeaderEpochCache, over (epoch, start offset) entries.
    if requested < 0 or not entries:
        return NO_EPOCH, -1
    if requested == entries[-1][0]:
        return requested, leo
    higher = next((e for e in entries if e[0] > requested), None)
    if higher is None:
        return NO_EPOCH, -1
    floor = [e for e in entries if e[0] <= requested]
    return (floor[-1][0] if floor else requested), higher[1]


class InMemoryRaftLog:
    """A RaftLog in a list: survives a simulated crash because the simulation keeps it."""

    def __init__(self) -> None:
        self._batches: list[bytes] = []
        self._bases: list[int] = []
        self._epochs: list[tuple[int, int]] = []  # (epoch, start offset), as the epoch cache
        self._start = 0
        self._end = 0
        self._snapshot: tuple[SnapshotId, bytes] | None = None

    @property
    def log_start_offset(self) -> int:
        return self._start

    @property
    def log_end_offset(self) -> int:
        return self._end

    @property
    def last_fetched_epoch(self) -> int:
        if self._epochs and self._end > self._start:
            return self._epochs[-1][0]
        return self._snapshot[0].epoch if self._snapshot else 0

    def _add(self, buf: bytearray) -> tuple[int, int]:
        first = last = -1
        for pos, h in iter_batches(buf):
            if h.base_offset != self._end:
                raise ValueError(f"batch at {h.base_offset} does not start at the log end offset {self._end}")
            self._batches.append(bytes(buf[pos:pos + h.size]))
            self._bases.append(h.base_offset)
            if not self._epochs or h.partition_leader_epoch > self._epochs[-1][0]:
                self._epochs.append((h.partition_leader_epoch, h.base_offset))
            first = h.base_offset if first < 0 else first
            last, self._end = h.last_offset, h.next_offset
        return first, last

    def append_as_leader(self, batch: bytes, epoch: int) -> tuple[int, int]:
        buf = bytearray(batch)
        nxt = self._end
        for pos, h in list(iter_batches(buf)):
            set_base_offset(buf, nxt, pos)
            set_partition_leader_epoch(buf, epoch, pos)
            nxt += h.last_offset_delta + 1
        return self._add(buf)

    def append_as_follower(self, batches: bytes) -> tuple[int, int]:
        return self._add(bytearray(batches))

    def read(self, offset: int, max_bytes: int) -> bytes:
        i = max(bisect.bisect_right(self._bases, offset) - 1, 0)
        out = bytearray()
        for b in self._batches[i:]:
            if out and len(out) + len(b) > max_bytes:
                break
            out += b
        return bytes(out)

    def truncate_to(self, offset: int) -> None:
        if offset >= self._end:
            return
        # The batch holding `offset` goes whole, as storage.Log does.
        i = max(bisect.bisect_right(self._bases, offset) - 1, 0)
        if i < len(self._batches) and parse_header(self._batches[i]).next_offset <= offset:
            i += 1
        del self._batches[i:]
        del self._bases[i:]
        self._end = max(self._start, parse_header(self._batches[-1]).next_offset if self._batches else self._start)
        self._epochs = [e for e in self._epochs if e[1] < self._end]

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        return _end_offset_for_epoch(self._epochs, epoch, self._end)

    def epoch_of(self, offset: int) -> int:
        floor = [e for e, start in self._epochs if start <= offset]
        return floor[-1] if floor else (self._snapshot[0].epoch if self._snapshot else 0)

    def latest_snapshot(self) -> SnapshotId | None:
        return self._snapshot[0] if self._snapshot else None

    def read_snapshot(self, snapshot_id: SnapshotId) -> bytes | None:
        return self._snapshot[1] if self._snapshot and self._snapshot[0] == snapshot_id else None

    def create_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        self._snapshot = (snapshot_id, bytes(data))
        i = bisect.bisect_left(self._bases, snapshot_id.end_offset)
        del self._batches[:i]
        del self._bases[:i]
        self._start = snapshot_id.end_offset
        kept = [e for e in self._epochs if e[1] >= self._start]
        spanning = [e for e in self._epochs if e[1] < self._start]
        if spanning and (not kept or kept[0][1] > self._start):
            kept.insert(0, (spanning[-1][0], self._start))
        self._epochs = kept

    def load_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        self._snapshot = (snapshot_id, bytes(data))
        self._batches, self._bases, self._epochs = [], [], []
        self._start = self._end = snapshot_id.end_offset

    def flush(self) -> None:
        pass


# -- over kafkalab.storage.Log --------------------------------------------------------------


class StorageRaftLog:
    """A RaftLog over kafkalab.storage.Log (segments, indexes, leader-epoch-checkpoint) plus
    `<end offset>-<epoch>.checkpoint` snapshot files in the same directory.

    `clock` gives the wall time in ms for segment roll/delete bookkeeping (the wiring passes
    its clock; the Raft logic never reads it).
    """

    def __init__(self, directory: str, config: dict[str, Any] | None = None, *, now_ms: int,
                 clock: Any = None) -> None:
        from kafkalab.storage.log import Log

        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self._clock = clock or (lambda: now_ms)
        snap = self._scan_snapshots()
        start = snap.end_offset if snap else 0
        self.log = Log(self.dir, config, log_start_offset=start, now_ms=now_ms)
        if snap and self.log.log_end_offset < snap.end_offset:
            # Crashed between storing a fetched snapshot and restarting the log at its end.
            self.log.truncate_fully_and_start_at(snap.end_offset, now_ms=now_ms)
        elif snap and self.log.log_start_offset < snap.end_offset:
            self.log.increment_log_start_offset(snap.end_offset)
        self._snapshot = snap

    def _scan_snapshots(self) -> SnapshotId | None:
        ids = []
        for name in os.listdir(self.dir):
            if name.endswith(".checkpoint") and "-" in name and name[:20].isdigit():
                off, ep = name[: -len(".checkpoint")].split("-", 1)
                ids.append(SnapshotId(int(off), int(ep)))
        return max(ids, default=None)

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def last_fetched_epoch(self) -> int:
        latest = self.log.epoch_cache.latest_epoch
        if latest is not None and self.log.log_end_offset > self.log.log_start_offset:
            return latest
        return self._snapshot.epoch if self._snapshot else 0

    def append_as_leader(self, batch: bytes, epoch: int) -> tuple[int, int]:
        return self.log.append(batch, assign_offsets=True, leader_epoch=epoch, now_ms=self._clock())

    def append_as_follower(self, batches: bytes) -> tuple[int, int]:
        return self.log.append(batches, assign_offsets=False, now_ms=self._clock())

    def read(self, offset: int, max_bytes: int) -> bytes:
        return self.log.read_bytes(offset, max_bytes)

    def truncate_to(self, offset: int) -> None:
        self.log.truncate_to(offset, now_ms=self._clock())

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        return self.log.epoch_cache.end_offset_for_epoch(epoch, self.log.log_end_offset)

    def epoch_of(self, offset: int) -> int:
        floor = [e.epoch for e in self.log.epoch_cache.entries if e.start_offset <= offset]
        return floor[-1] if floor else (self._snapshot.epoch if self._snapshot else 0)

    def latest_snapshot(self) -> SnapshotId | None:
        return self._snapshot

    def read_snapshot(self, snapshot_id: SnapshotId) -> bytes | None:
        path = os.path.join(self.dir, snapshot_id.file_name)
        if not os.path.exists(path):
            return None
        with open(path, "rb") as f:
            return f.read()

    def _store_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        from kafkalab.storage.files import write_atomic

        write_atomic(os.path.join(self.dir, snapshot_id.file_name), bytes(data))
        old, self._snapshot = self._snapshot, snapshot_id
        if old is not None and old != snapshot_id:
            os.remove(os.path.join(self.dir, old.file_name))

    def create_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        self._store_snapshot(snapshot_id, data)
        now = self._clock()
        self.log.increment_log_start_offset(snapshot_id.end_offset)
        # Whole segments below the new log start go now; the active one stays.
        segs = self.log.segments
        gone = [s for s, nxt in zip(segs, segs[1:], strict=False) if nxt.base_offset <= snapshot_id.end_offset]
        if gone:
            self.log.delete_segments(gone, now)
        self.log.delete_expired_files(now)

    def load_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        self._store_snapshot(snapshot_id, data)
        self.log.truncate_fully_and_start_at(snapshot_id.end_offset, now_ms=self._clock())

    def flush(self) -> None:
        self.log.flush()

    def close(self) -> None:
        self.log.close()
