"""Pending transactional offset commits: visible on COMMIT, dropped on ABORT, replayable."""

from __future__ import annotations

from kafkalab.broker.group_coordinator import (
    decode_key,
    decode_offset_value,
    offset_commit_key,
    offset_commit_value,
)
from kafkalab.broker.txn_offsets import (
    TxnOffsetStore,
    newer,
    next_sequence,
    txn_offset_commit_batch,
)
from kafkalab.records.batch import decode_batch
from kafkalab.records.control import encode_control_batch
from kafkalab.records.header import parse_header, set_base_offset
from kafkalab.records.scan import iter_batches


def decode(key, value):
    kind, k = decode_key(key)
    if kind != "offset":
        return None
    group, topic, p = k
    return group, (topic, p), None if value is None else decode_offset_value(value)


def test_commit_materialises_and_abort_drops():
    s = TxnOffsetStore()
    s.add(7, "g", {("in", 0): (10, 0, ""), ("in", 1): (5, 0, "")}, log_offset=3)
    s.add(8, "g", {("in", 2): (1, 0, "")}, log_offset=4)
    assert s.is_pending("g", ("in", 0)) and not s.is_pending("h", ("in", 0))
    assert s.pending_partitions("g") == {("in", 0), ("in", 1), ("in", 2)}
    assert s.producers_of("g") == {7, 8}
    done = s.complete(7, commit=True)
    assert {tp: po.value[0] for tp, po in done["g"].items()} == {("in", 0): 10, ("in", 1): 5}
    assert not s.is_pending("g", ("in", 0))
    assert s.complete(8, commit=False) == {}
    assert s.pending == {}


def test_later_commit_in_same_txn_overwrites():
    s = TxnOffsetStore()
    s.add(7, "g", {("in", 0): (10, 0, "")}, log_offset=3)
    s.add(7, "g", {("in", 0): (20, 0, "")}, log_offset=9)
    (po,) = s.complete(7, True)["g"].values()
    assert po.value[0] == 20 and po.log_offset == 9


def test_newer_rule():
    assert newer(5, None) and newer(5, 4) and not newer(4, 5)


def test_unload_keeps_only_owned_groups():
    s = TxnOffsetStore()
    s.add(1, "mine", {("t", 0): (1, 0, "")}, 0)
    s.add(1, "theirs", {("t", 0): (1, 0, "")}, 0)
    s.add(2, "theirs", {("t", 1): (1, 0, "")}, 0)
    s.unload(lambda g: g == "mine")
    assert s.pending_partitions("mine") == {("t", 0)} and s.pending_partitions("theirs") == set()
    assert 2 not in s.pending


def test_replaying_the_log_applies_markers_in_order():
    recs = [(offset_commit_key("g", "in", 0), offset_commit_value(42, 0, "", 0))]
    log = bytearray()
    batches = [
        txn_offset_commit_batch(recs, producer_id=5, producer_epoch=0, base_sequence=0, timestamp_ms=1),
        txn_offset_commit_batch([(offset_commit_key("g", "in", 1), offset_commit_value(7, 0, "", 0))],
                                producer_id=6, producer_epoch=0, base_sequence=0, timestamp_ms=1),
        encode_control_batch("abort", producer_id=6, producer_epoch=0, coordinator_epoch=0, timestamp_ms=2),
        encode_control_batch("commit", producer_id=5, producer_epoch=0, coordinator_epoch=0, timestamp_ms=2),
    ]
    offset = 0
    for b in batches:
        b = bytearray(b)
        set_base_offset(b, offset)
        offset += parse_header(b).last_offset_delta + 1
        log += b
    s = TxnOffsetStore()
    committed = []
    for pos, _h in iter_batches(bytes(log)):
        committed += s.apply_batch(bytes(log), pos, decode)
    assert [(g, tp, po.value[0], po.log_offset) for g, tp, po in committed] == [("g", ("in", 0), 42, 0)]
    assert s.pending == {}
    h = decode_batch(batches[0]).header
    assert h.is_transactional and h.producer_id == 5


def test_non_transactional_batches_are_left_to_the_caller():
    from kafkalab.records.batch import encode_batch
    s = TxnOffsetStore()
    b = encode_batch([(offset_commit_key("g", "in", 0), offset_commit_value(1, 0, "", 0), None, 0)])
    assert s.apply_batch(b, 0, decode) == [] and s.pending == {}


class _Entry:
    def __init__(self, epoch, last_seq):
        self.producer_epoch, self.last_seq = epoch, last_seq


def test_next_sequence_follows_the_partition_state():
    assert next_sequence(None, 0) == 0
    assert next_sequence(_Entry(0, 4), 0) == 5
    assert next_sequence(_Entry(0, 4), 1) == 0  # a new epoch restarts at 0
    assert next_sequence(_Entry(0, 2**31 - 1), 0) == 0
