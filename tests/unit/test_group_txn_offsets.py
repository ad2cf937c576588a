"""TxnOffsetCommit in the GroupCoordinator, driven against a fake __consumer_offsets partition:
pending offsets stay invisible until the COMMIT marker, ABORT drops them, a zombie member or
producer is fenced, and a coordinator that reloads the log after failover agrees."""

from __future__ import annotations

import datetime

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.join_group.v9 import request as jg
from kio.schema.offset_commit.v8 import request as oc
from kio.schema.sync_group.v5 import request as sg
from kio.schema.txn_offset_commit.v3 import request as toc

from kafkalab.broker.group_coordinator import (
    GroupCoordinator,
    offset_commit_key,
    offset_commit_value,
)
from kafkalab.broker.producer_state import ProducerStateManager
from kafkalab.records.batch import encode_batch
from kafkalab.records.control import encode_control_batch
from kafkalab.records.header import parse_header, set_base_offset
from kafkalab.records.scan import iter_batches

TP0, TP1 = ("in", 0), ("in", 1)
PID = 4000


class OffsetsPartition:
    """Stands in for one __consumer_offsets partition: a log of batches with offsets and the
    producer state a leader keeps (so sequences and epochs are checked as the broker does)."""

    def __init__(self):
        self.data = bytearray()
        self.state = ProducerStateManager()
        self.fail_with: ErrorCode | None = None
        self.followed = 0  # how far the coordinator has replayed the log

    def write(self, batch: bytes) -> int:
        b = bytearray(batch)
        base = self.state.map_end_offset
        set_base_offset(b, base)
        h = parse_header(b)
        if not h.is_control:
            verdict = self.state.check_records(bytes(b))
            assert verdict.should_append, verdict.message
        self.state.update_records(bytes(b))
        self.data += b
        return base

    def append(self, _partition, records, on_done):
        on_done(ErrorCode.none, self.write(encode_batch([(k, v, None, 0) for k, v in records])))

    def append_batch(self, _partition, batch, on_done):
        if self.fail_with is not None:
            on_done(self.fail_with, -1)
            return
        on_done(ErrorCode.none, self.write(batch))

    def marker(self, kind: str, epoch: int = 0) -> None:
        self.write(encode_control_batch(kind, producer_id=PID, producer_epoch=epoch, coordinator_epoch=0,
                                        timestamp_ms=0))

    def follow(self, c: GroupCoordinator) -> None:
        """What the broker's tick does: replay new transactional batches and markers."""
        data = bytes(self.data)
        for pos, h in iter_batches(data):
            if h.base_offset >= self.followed:
                c.load_batch(data, pos, 0, txn_only=True)
                self.followed = h.next_offset

    def coordinator(self) -> GroupCoordinator:
        return GroupCoordinator(num_partitions=1, append=self.append, owns=lambda p: "yes",
                                append_batch=self.append_batch,
                                producer_entry=lambda p, pid: self.state.last_entry(pid))


@pytest.fixture
def log():
    return OffsetsPartition()


def member(c: GroupCoordinator, now: int = 0) -> tuple[str, int]:
    """A one-member group, Stable: (member id, generation)."""
    def join(member_id):
        out = []
        c.join_group(jg.JoinGroupRequest(
            group_id="g", session_timeout=datetime.timedelta(seconds=10),
            rebalance_timeout=datetime.timedelta(seconds=10), member_id=member_id, group_instance_id=None,
            protocol_type="consumer", protocols=(jg.JoinGroupRequestProtocol(name="range", metadata=b""),)),
            now, out.append)
        return out[0]
    mid = join("")["member_id"]
    gen = join(mid)["generation_id"]
    c.sync_group(sg.SyncGroupRequest(group_id="g", generation_id=gen, member_id=mid, assignments=(
        sg.SyncGroupRequestAssignment(member_id=mid, assignment=b""),)), now, lambda r: None)
    return mid, gen


def txn_commit(c, offsets, *, mid="", gen=-1, epoch=0, pid=PID):
    out = []
    c.txn_commit_offsets(toc.TxnOffsetCommitRequest(
        transactional_id="t", group_id="g", producer_id=pid, producer_epoch=epoch, generation_id=gen,
        member_id=mid, group_instance_id=None, topics=tuple(
            toc.TxnOffsetCommitRequestTopic(name=t, partitions=(toc.TxnOffsetCommitRequestPartition(
                partition_index=p, committed_offset=o, committed_leader_epoch=-1, committed_metadata=None),))
            for (t, p), o in offsets.items())), 0, out.append)
    return out[0]


def plain_commit(c, offsets, mid, gen):
    out = []
    c.commit_offsets(oc.OffsetCommitRequest(
        group_id="g", generation_id_or_member_epoch=gen, member_id=mid, group_instance_id=None,
        topics=tuple(oc.OffsetCommitRequestTopic(name=t, partitions=(oc.OffsetCommitRequestPartition(
            partition_index=p, committed_offset=o, committed_leader_epoch=-1, committed_metadata=None),))
            for (t, p), o in offsets.items())), 0, out.append)
    return out[0]


def committed(c, tp):
    return c.fetch_offsets("g", [tp])[1][tp][0]


def test_pending_until_commit_marker(log):
    c = log.coordinator()
    mid, gen = member(c)
    assert txn_commit(c, {TP0: 10, TP1: 20}, mid=mid, gen=gen) == {TP0: ErrorCode.none, TP1: ErrorCode.none}
    log.follow(c)  # the batch itself is in the log now, still pending
    assert committed(c, TP0) == -1 and committed(c, TP1) == -1
    assert c.unstable_offsets("g", [TP0, TP1]) == {TP0, TP1}
    # A second commit in the same transaction: the producer's next sequence in this partition.
    assert txn_commit(c, {TP0: 15}, mid=mid, gen=gen)[TP0] == ErrorCode.none
    assert log.state.last_entry(PID).last_seq == 2
    log.marker("commit")
    log.follow(c)
    assert committed(c, TP0) == 15 and committed(c, TP1) == 20
    assert c.unstable_offsets("g", None) == set()


def test_abort_marker_drops_pending_and_keeps_old_offset(log):
    c = log.coordinator()
    mid, gen = member(c)
    assert plain_commit(c, {TP0: 5}, mid, gen)[TP0] == ErrorCode.none
    txn_commit(c, {TP0: 50}, mid=mid, gen=gen)
    assert c.unstable_offsets("g", [TP0]) == {TP0} and committed(c, TP0) == 5
    log.marker("abort")
    log.follow(c)
    assert committed(c, TP0) == 5 and c.unstable_offsets("g", [TP0]) == set()


def test_zombie_member_and_producer_are_fenced(log):
    c = log.coordinator()
    mid, gen = member(c)
    assert txn_commit(c, {TP0: 7}, mid=mid, gen=gen - 1)[TP0] == ErrorCode.illegal_generation
    assert txn_commit(c, {TP0: 7}, mid="ghost", gen=gen)[TP0] == ErrorCode.unknown_member_id
    assert c.txn_offsets.pending == {} and log.state.last_entry(PID) is None  # nothing written
    # A newer instance of the transactional.id (epoch 1) has written here: epoch 0 is a zombie.
    assert txn_commit(c, {TP0: 8}, mid=mid, gen=gen, epoch=1)[TP0] == ErrorCode.none
    assert txn_commit(c, {TP0: 9}, mid=mid, gen=gen, epoch=0)[TP0] == ErrorCode.invalid_producer_epoch
    log.marker("commit", epoch=1)
    log.follow(c)
    assert committed(c, TP0) == 8


def test_generation_minus_one_skips_the_member_check(log):
    c = log.coordinator()
    member(c)
    assert txn_commit(c, {TP0: 3})[TP0] == ErrorCode.none  # EOS v1 style: no consumer metadata
    log.marker("commit")
    log.follow(c)
    assert committed(c, TP0) == 3


def test_failed_append_forgets_the_pending_offsets(log):
    c = log.coordinator()
    mid, gen = member(c)
    txn_commit(c, {TP0: 4}, mid=mid, gen=gen)
    log.fail_with = ErrorCode.not_enough_replicas
    assert txn_commit(c, {TP0: 6, TP1: 6}, mid=mid, gen=gen)[TP1] == ErrorCode.not_enough_replicas
    assert c.unstable_offsets("g", None) == {TP0}  # TP0 keeps the earlier, written offset
    log.fail_with = None
    log.marker("commit")
    log.follow(c)
    assert committed(c, TP0) == 4 and committed(c, TP1) == -1


def test_a_later_plain_commit_wins_over_the_transaction(log):
    c = log.coordinator()
    mid, gen = member(c)
    txn_commit(c, {TP0: 30}, mid=mid, gen=gen)
    plain_commit(c, {TP0: 31}, mid, gen)  # written after the transaction's record
    log.marker("commit")
    log.follow(c)
    assert committed(c, TP0) == 31


def test_reload_after_failover_keeps_committed_drops_aborted(log):
    c = log.coordinator()
    mid, gen = member(c)
    plain_commit(c, {TP0: 1, TP1: 1}, mid, gen)
    txn_commit(c, {TP0: 10}, mid=mid, gen=gen)
    log.marker("commit")
    txn_commit(c, {TP1: 99}, mid=mid, gen=gen)
    log.marker("abort")
    txn_commit(c, {TP1: 12}, mid=mid, gen=gen)  # still open when the coordinator moves
    # The new coordinator replays the whole partition (the broker's load).
    new = log.coordinator()
    data = bytes(log.data)
    for pos, _h in iter_batches(data):
        new.load_batch(data, pos, 0)
    assert committed(new, TP0) == 10 and committed(new, TP1) == 1
    assert new.unstable_offsets("g", None) == {TP1}
    assert mid in new.groups["g"].members and new.groups["g"].generation == gen
    log.followed = log.state.map_end_offset  # the new coordinator loaded all of it
    log.marker("commit")
    log.follow(new)
    assert committed(new, TP1) == 12 and new.unstable_offsets("g", None) == set()


def test_unload_forgets_pending_offsets(log):
    c = log.coordinator()
    mid, gen = member(c)
    txn_commit(c, {TP0: 2}, mid=mid, gen=gen)
    c.unload_partition(0)
    assert c.txn_offsets.pending == {} and "g" not in c.groups


def test_offset_commit_key_round_trip_is_what_the_replay_reads():
    # The records a TxnOffsetCommit writes are plain OffsetCommit records, as in Kafka.
    from kafkalab.broker.group_coordinator import decode_offset_record
    assert decode_offset_record(offset_commit_key("g", "in", 3), offset_commit_value(9, 2, "m", 0)) == \
        ("g", ("in", 3), (9, 2, "m"))
