"""Transactional offset commits (TxnOffsetCommit) for the group coordinator. Pure.

A consume-transform-produce application commits its input offsets *inside* its transaction:
the group coordinator writes them to __consumer_offsets in a transactional batch (the
producer's id and epoch), where they stay pending, invisible to OffsetFetch, until the
transaction coordinator's marker lands in that same partition: COMMIT makes them the group's
committed offsets, ABORT drops them. So the output records and the input offsets become
visible together, or not at all.

`TxnOffsetStore` keeps the pending offsets per producer id. It is fed either directly
(`add` after the TxnOffsetCommit append is acknowledged, `complete` when a marker for the
producer is seen) or by replaying/tailing the partition's log with `apply_batch`, which
handles both kinds of batch in log order — the same path for loading after failover and for
noticing markers the transaction coordinator had written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kafkalab.records.batch import decode_batch, encode_batch
from kafkalab.records.control import parse_control_record
from kafkalab.records.header import parse_header

TP = tuple[str, int]
OffsetValue = tuple[int, int, str | None]  # (offset, leader_epoch, metadata), as OffsetFetch answers


@dataclass(frozen=True, slots=True)
class PendingOffset:
    value: OffsetValue
    log_offset: int  # where the commit record sits in __consumer_offsets: later writes win


def newer(candidate_log_offset: int, current_log_offset: int | None) -> bool:
    """Kafka's rule when a transaction's offsets materialise: they replace a group's committed
    offset only if their record is later in the log than the one that set it."""
    return current_log_offset is None or candidate_log_offset > current_log_offset


class TxnOffsetStore:
    def __init__(self) -> None:
        # producer id -> (group, partition) -> the offset that producer's open transaction wrote
        self.pending: dict[int, dict[tuple[str, TP], PendingOffset]] = {}

    def add(self, producer_id: int, group: str, offsets: Mapping[TP, OffsetValue], log_offset: int) -> None:
        """After the TxnOffsetCommit batch at `log_offset` is acknowledged (acks=all)."""
        mine = self.pending.setdefault(producer_id, {})
        for tp, value in offsets.items():
            mine[(group, tp)] = PendingOffset(value, log_offset)

    def complete(self, producer_id: int, commit: bool) -> dict[str, dict[TP, PendingOffset]]:
        """A COMMIT or ABORT marker for `producer_id` landed: returns the offsets that become
        committed, per group (empty on ABORT)."""
        mine = self.pending.pop(producer_id, {})
        out: dict[str, dict[TP, PendingOffset]] = {}
        if commit:
            for (group, tp), po in mine.items():
                out.setdefault(group, {})[tp] = po
        return out

    def is_pending(self, group: str, tp: TP) -> bool:
        """OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for these."""
        return any((group, tp) in mine for mine in self.pending.values())

    def pending_partitions(self, group: str) -> set[TP]:
        return {tp for mine in self.pending.values() for (g, tp) in mine if g == group}

    def producers_of(self, group: str) -> set[int]:
        return {pid for pid, mine in self.pending.items() if any(g == group for g, _ in mine)}

    def unload(self, owns_group: Callable[[str], bool]) -> None:
        """Forget pending offsets of groups this coordinator no longer owns."""
        for pid in list(self.pending):
            kept = {k: v for k, v in self.pending[pid].items() if owns_group(k[0])}
            if kept:
                self.pending[pid] = kept
            else:
                del self.pending[pid]

    def apply_batch(self, data: bytes | memoryview, pos: int,
                    decode_offset_record: Callable[[bytes, bytes | None], tuple[str, TP, OffsetValue | None] | None],
                    ) -> list[tuple[str, TP, PendingOffset]]:
        """Replay one batch of __consumer_offsets (in log order). A transactional batch of
        offset commits becomes pending under its producer id; a control batch completes that
        producer's pending offsets. Returns the offsets that became committed: (group,
        partition, offset). Non-transactional batches are the caller's (plain OffsetCommit)."""
        h = parse_header(data, pos)
        if not h.is_transactional:
            return []
        batch = decode_batch(data, pos)
        if h.is_control:
            kind, _epoch = parse_control_record(batch.records[0])
            done = self.complete(h.producer_id, kind == "commit")
            return [(g, tp, po) for g, tps in done.items() for tp, po in tps.items()]
        for r in batch.records:
            if r.key is None:
                continue
            decoded = decode_offset_record(r.key, r.value)
            if decoded is None:
                continue
            group, tp, value = decoded
            mine = self.pending.setdefault(h.producer_id, {})
            if value is None:
                mine.pop((group, tp), None)
            else:
                mine[(group, tp)] = PendingOffset(value, r.offset)
        return []


def next_sequence(last_entry: Any, producer_epoch: int) -> int:
    """The base sequence for the next TxnOffsetCommit batch of a producer in a
    __consumer_offsets partition, from that partition's producer state
    (`part.producer_state.last_entry(producer_id)`): the producer's batches there must be in
    sequence like any idempotent producer's, and restart at 0 with a new epoch."""
    if last_entry is None or last_entry.producer_epoch != producer_epoch or last_entry.last_seq < 0:
        return 0
    return (last_entry.last_seq + 1) & 0x7FFFFFFF


def txn_offset_commit_batch(records: list[tuple[bytes, bytes]], *, producer_id: int, producer_epoch: int,
                            base_sequence: int, timestamp_ms: int) -> bytes:
    """The transactional batch that carries a TxnOffsetCommit's OffsetCommit records."""
    return encode_batch([(k, v, None, timestamp_ms) for k, v in records], producer_id=producer_id,
                        producer_epoch=producer_epoch, base_sequence=base_sequence, transactional=True)
