"""The replication invariants, each a small function of the brokers' state, checked after every
event (and, for durability, once at the end). Each raises `Broken(invariant, detail)`; the run
turns it into a `Violation` naming the seed and the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from kafkalab.broker.partition import Partition
from kafkalab.records.batch import decode_batch
from kafkalab.records.header import BatchHeader
from kafkalab.records.scan import iter_batches

TP = tuple[str, int]

ONE_LEADER = "one leader per partition epoch"
HW_MONOTONIC = "a leader's high watermark never moves back"
REPLICAS_AGREE = "replicas agree below the high watermark"
CONSUMER_BELOW_HW = "no consumer reads past the high watermark"
READS_DURABLE = "every record a consumer read stays in the log at its offset"
ACKED_DURABLE = "every acks=all acknowledged record is in the final log at its offset"
NO_DUPLICATES = "idempotent producers leave no duplicates"
CONVERGED = "the cluster converges once the faults are healed"


class Broken(Exception):
    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


@dataclass
class Replica:
    """One live replica as the checks see it: (broker, incarnation, partition object)."""

    broker: int
    incarnation: int
    part: Partition


@dataclass
class Checks:
    checks: int = 0
    leaders: dict[tuple[TP, int], int] = field(default_factory=dict)  # (tp, epoch) -> broker
    leader_hw: dict[tuple[int, int, TP, int], int] = field(default_factory=dict)
    # Every batch any replica has had below its HW: (tp, base offset) -> (last offset, epoch, crc).
    committed: dict[tuple[TP, int], tuple[int, int, int]] = field(default_factory=dict)
    checked_upto: dict[tuple[int, int, TP], int] = field(default_factory=dict)
    consumed: dict[TP, dict[int, bytes]] = field(default_factory=dict)

    def after_event(self, replicas: Iterable[Replica]) -> None:
        replicas = list(replicas)
        self.one_leader_per_epoch(replicas)
        self.leader_hw_monotonic(replicas)
        self.replicas_agree_below_hw(replicas)

    # -- after every event ----------------------------------------------------------------
    def one_leader_per_epoch(self, replicas: list[Replica]) -> None:
        self.checks += 1
        for r in replicas:
            p = r.part
            if p.is_leader:
                tp = (p.topic, p.partition)
                first = self.leaders.setdefault((tp, p.leader_epoch), r.broker)
                if first != r.broker:
                    raise Broken(ONE_LEADER, f"{tp[0]}-{tp[1]} epoch {p.leader_epoch} led by broker "
                                             f"{first} and broker {r.broker}")

    def leader_hw_monotonic(self, replicas: list[Replica]) -> None:
        self.checks += 1
        for r in replicas:
            p = r.part
            if p.is_leader:
                key = (r.broker, r.incarnation, (p.topic, p.partition), p.leader_epoch)
                last = self.leader_hw.get(key, -1)
                if p.high_watermark < last:
                    raise Broken(HW_MONOTONIC, f"{p.topic}-{p.partition} on broker {r.broker} (epoch "
                                               f"{p.leader_epoch}): {last} -> {p.high_watermark}")
                self.leader_hw[key] = p.high_watermark

    def replicas_agree_below_hw(self, replicas: list[Replica]) -> None:
        """Each batch below a replica's HW must be the batch every other replica has (or had)
        below its HW at that offset: same last offset, leader epoch and CRC. Each replica's log
        is read once, as its HW moves past it (a truncation moves the mark back)."""
        self.checks += 1
        for r in replicas:
            p = r.part
            tp = (p.topic, p.partition)
            key = (r.broker, r.incarnation, tp)
            hw = min(p.high_watermark, p.log_end_offset)
            start = self.checked_upto.get(key, p.log_start_offset)
            if start > p.log_end_offset:
                start = p.log_end_offset  # truncated below what was checked: read it again
            if hw <= start:
                self.checked_upto[key] = start
                continue
            pos_offset = start
            for h in batches(p, start, hw):
                seen = self.committed.setdefault((tp, h.base_offset), (h.last_offset, h.partition_leader_epoch, h.crc))
                if seen != (h.last_offset, h.partition_leader_epoch, h.crc):
                    raise Broken(REPLICAS_AGREE, f"{tp[0]}-{tp[1]} batch at offset {h.base_offset} on broker "
                                                 f"{r.broker} (below its HW {hw}) is (last offset, epoch, crc) "
                                                 f"{(h.last_offset, h.partition_leader_epoch, h.crc)}, "
                                                 f"another replica had {seen}")
                pos_offset = h.last_offset + 1
            self.checked_upto[key] = pos_offset

    # -- consumers -------------------------------------------------------------------------
    def consumer_read(self, consumer: str, tp: TP, high_watermark: int, records: list[tuple[int, bytes]]) -> None:
        """`high_watermark` -1: the leader answered OFFSET_OUT_OF_RANGE at the consumer's position."""
        self.checks += 2
        if high_watermark < 0:
            offset = records[-1][0]
            raise Broken(READS_DURABLE, f"{consumer} read {tp[0]}-{tp[1]} up to offset {offset}, "
                                        f"{self.consumed.get(tp, {}).get(offset)!r} there; the leader's log "
                                        "now ends below it (OFFSET_OUT_OF_RANGE)")
        for offset, value in records:
            if offset >= high_watermark:
                raise Broken(CONSUMER_BELOW_HW, f"{consumer} read {tp[0]}-{tp[1]} offset {offset} with the "
                                                f"high watermark at {high_watermark}")
            seen = self.consumed.setdefault(tp, {}).setdefault(offset, value)
            if seen != value:
                raise Broken(READS_DURABLE, f"{tp[0]}-{tp[1]} offset {offset}: {consumer} read {value!r}, "
                                            f"an earlier read saw {seen!r}")

    # -- at the end ------------------------------------------------------------------------
    def final(self, logs: dict[TP, dict[int, bytes]], acked: dict[TP, dict[int, bytes]]) -> None:
        """`logs`: the leader's final log of each partition, offset -> value."""
        self.checks += 3
        for tp, recs in sorted(acked.items()):
            log = logs.get(tp, {})
            for offset, value in sorted(recs.items()):
                if log.get(offset) != value:
                    raise Broken(ACKED_DURABLE, f"{tp[0]}-{tp[1]} offset {offset}: acknowledged {value!r}, "
                                                f"the final log has {log.get(offset)!r}")
        for tp, recs in sorted(self.consumed.items()):
            log = logs.get(tp, {})
            for offset, value in sorted(recs.items()):
                if log.get(offset) != value:
                    raise Broken(READS_DURABLE, f"{tp[0]}-{tp[1]} offset {offset}: a consumer read {value!r}, "
                                                f"the final log has {log.get(offset)!r}")
        for tp, log in sorted(logs.items()):
            where: dict[bytes, int] = {}
            for offset, value in sorted(log.items()):
                if value in where:
                    raise Broken(NO_DUPLICATES, f"{tp[0]}-{tp[1]}: {value!r} at offsets {where[value]} and {offset}")
                where[value] = offset


def read_log(part: Partition) -> dict[int, bytes]:
    """offset -> value of every record in a replica's log."""
    out: dict[int, bytes] = {}
    offset = part.log_start_offset
    while offset < part.log_end_offset:
        data = part.log.read_bytes(offset, 1 << 30)
        if not data:
            break
        for pos, h in iter_batches(data):
            for rec in decode_batch(data[pos:pos + h.size]).records:
                out[rec.offset] = rec.value or b""
            offset = h.next_offset
    return out


def batches(part: Partition, start: int, end: int) -> Iterator[BatchHeader]:
    """Headers of the whole batches of a replica's log from `start` below `end`."""
    offset = start
    while offset < end:
        data = part.log.read_bytes(offset, 1 << 30, max_offset=end)
        if not data:
            return
        for _pos, h in iter_batches(data):
            if h.last_offset >= end:
                return
            yield h
            offset = h.next_offset
