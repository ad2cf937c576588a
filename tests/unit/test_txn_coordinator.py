"""The TransactionCoordinator state machine, driven with an injected clock and fake effects."""

from __future__ import annotations

import itertools

import pytest
from kio.schema.errors import ErrorCode

from kafkalab.broker.group_coordinator import OFFSETS_TOPIC, java_string_hashcode
from kafkalab.broker.group_coordinator import partition_for as group_partition
from kafkalab.broker.txn_coordinator import (
    TransactionCoordinator,
    TxnState,
    decode_txn_key,
    decode_txn_value,
    partition_for,
    txn_log_key,
    txn_log_value,
)

TID = "tx-1"
NP = 6


class Harness:
    """Fake log and marker channel: effects are queued, the test completes them."""

    def __init__(self, auto: bool = True, pids: itertools.count | None = None):
        self.auto = auto
        self.log: dict[int, list[tuple[bytes, bytes | None]]] = {}
        self.appends: list[tuple[int, list, object]] = []
        self.markers: list[tuple[int, int, int, bool, list, object]] = []
        self.owned: dict[int, str] = dict.fromkeys(range(NP), "yes")
        self.rows: list[tuple[str, dict]] = []
        self.pids = pids or itertools.count(1000)
        self.coord = self.make()

    def make(self) -> TransactionCoordinator:
        c = TransactionCoordinator(
            num_partitions=NP, offsets_partitions=NP, append=self.append, send_markers=self.send_markers,
            owns=lambda p: self.owned.get(p, "no"), next_producer_id=lambda: next(self.pids),
            publish=lambda kind, row: self.rows.append((kind, row)), max_timeout_ms=60_000,
            id_expiration_ms=100_000)
        for p in range(NP):
            c.coordinator_epochs[p] = 0
        return c

    def append(self, p, records, done):
        if self.auto:
            self.log.setdefault(p, []).extend(records)
            done(ErrorCode.none)
        else:
            self.appends.append((p, records, done))

    def finish_appends(self, code=ErrorCode.none):
        while self.appends:
            p, records, done = self.appends.pop(0)
            if code == ErrorCode.none:
                self.log.setdefault(p, []).extend(records)
            done(code)

    def send_markers(self, _txn_partition, coord_epoch, pid, epoch, commit, partitions, done):
        self.markers.append((coord_epoch, pid, epoch, commit, partitions, done))

    def deliver_markers(self):
        while self.markers:
            self.markers.pop(0)[-1]()

    def state(self, tid=TID) -> TxnState:
        return self.coord.txns[tid].state

    # request helpers returning the reply
    def init(self, tid=TID, now=0, timeout=10_000, pid=-1, epoch=-1):
        out = []
        self.coord.init_producer_id(tid, timeout, pid, epoch, now, lambda *a: out.append(a))
        return out[0] if out else None

    def add(self, pid, epoch, tps, tid=TID, now=0):
        out = []
        self.coord.add_partitions(tid, pid, epoch, tps, now, out.append)
        return out[0] if out else None

    def end(self, pid, epoch, commit, tid=TID, now=0):
        out = []
        self.coord.end_txn(tid, pid, epoch, commit, now, out.append)
        return out[0] if out else None


def test_partition_is_the_java_hash_of_the_id():
    for tid in ("tx-1", "orders-app", "é", "x" * 40):
        assert partition_for(tid, 50) == (java_string_hashcode(tid) & 0x7FFFFFFF) % 50
    assert java_string_hashcode("hello") == 99162322  # Java: "hello".hashCode()


def test_log_record_roundtrip_uses_kafkas_v0_layout():
    key = txn_log_key("abc")
    assert key == b"\x00\x00\x00\x03abc"
    value = txn_log_value(7, 3, 60_000, TxnState.ONGOING, {("t", 1), ("t", 0), ("u", 2)}, 123, 100)
    # version, pid, epoch, timeout, state, then 2 topics
    assert value[:17] == b"\x00\x00" + (7).to_bytes(8, "big") + b"\x00\x03" + (60_000).to_bytes(4, "big") + b"\x01"
    v = decode_txn_value(value)
    assert decode_txn_key(key) == "abc"
    assert (v["producer_id"], v["producer_epoch"], v["timeout_ms"], v["state"]) == (7, 3, 60_000, TxnState.ONGOING)
    assert v["partitions"] == {("t", 0), ("t", 1), ("u", 2)}
    assert (v["last_update_ms"], v["start_ms"]) == (123, 100)


def test_commit_writes_prepare_then_markers_then_complete():
    h = Harness()
    code, pid, epoch = h.init()
    assert code == ErrorCode.none and pid == 1000 and epoch == 0
    assert h.add(pid, epoch, [("a", 0), ("b", 1)]) == ErrorCode.none
    assert h.state() == TxnState.ONGOING
    assert h.add(pid, epoch, [("a", 0)]) == ErrorCode.none  # already in: no new log write
    p = partition_for(TID, NP)
    assert len(h.log[p]) == 2
    assert h.end(pid, epoch, True) == ErrorCode.none  # answered once PrepareCommit is durable
    assert h.state() == TxnState.PREPARE_COMMIT
    (coord_epoch, mpid, mepoch, commit, parts, _), = h.markers
    assert (mpid, mepoch, commit, sorted(parts)) == (pid, epoch, True, [("a", 0), ("b", 1)])
    # While markers are out, the producer must wait.
    assert h.add(pid, epoch, [("a", 0)]) == ErrorCode.concurrent_transactions
    assert h.end(pid, epoch, True) == ErrorCode.concurrent_transactions
    assert h.init(pid=pid, epoch=epoch)[0] == ErrorCode.concurrent_transactions
    h.deliver_markers()
    assert h.state() == TxnState.COMPLETE_COMMIT and h.coord.txns[TID].partitions == set()
    states = [decode_txn_value(v)["state"] for _, v in h.log[p]]
    assert states == [TxnState.EMPTY, TxnState.ONGOING, TxnState.PREPARE_COMMIT, TxnState.COMPLETE_COMMIT]
    assert h.end(pid, epoch, True) == ErrorCode.none  # a retried EndTxn after completion
    assert h.end(pid, epoch, False) == ErrorCode.invalid_txn_state
    events = [r["detail"] for k, r in h.rows if k == "event"]
    assert any("markers" in d for d in events) and any("CompleteCommit" in d for d in events)
    txn_rows = [r for k, r in h.rows if k == "txn"]
    assert txn_rows[-1]["state"] == "CompleteCommit" and txn_rows[-1]["producer_id"] == pid


def test_abort_and_next_transaction():
    h = Harness()
    _, pid, epoch = h.init()
    h.add(pid, epoch, [("a", 0)])
    assert h.end(pid, epoch, False) == ErrorCode.none
    assert h.markers[0][3] is False
    h.deliver_markers()
    assert h.state() == TxnState.COMPLETE_ABORT
    assert h.add(pid, epoch, [("a", 1)], now=5) == ErrorCode.none
    assert h.coord.txns[TID].partitions == {("a", 1)} and h.coord.txns[TID].start_ms == 5
    assert h.end(pid, epoch, False, now=6) == ErrorCode.none


def test_end_without_transaction_is_invalid_state():
    h = Harness()
    _, pid, epoch = h.init()
    assert h.end(pid, epoch, True) == ErrorCode.invalid_txn_state


def test_new_instance_fences_the_old_one():
    h = Harness()
    _, pid, e0 = h.init()
    assert h.add(pid, e0, [("a", 0)]) == ErrorCode.none
    # A second instance with the same transactional.id: the open transaction is aborted
    # under a bumped epoch and the new instance is told to retry.
    assert h.init()[0] == ErrorCode.concurrent_transactions
    m = h.coord.txns[TID]
    assert m.state == TxnState.PREPARE_ABORT and m.producer_epoch == e0 + 1
    (_, _, mepoch, commit, _, _), = h.markers
    assert mepoch == e0 + 1 and commit is False  # the marker itself carries the new epoch
    assert h.init()[0] == ErrorCode.concurrent_transactions  # still aborting
    h.deliver_markers()
    code, pid2, e2 = h.init()
    assert code == ErrorCode.none and pid2 == pid and e2 == e0 + 2
    # The zombie: every coordinator request now fails with PRODUCER_FENCED.
    assert h.add(pid, e0, [("a", 1)]) == ErrorCode.producer_fenced
    assert h.end(pid, e0, True) == ErrorCode.producer_fenced
    assert h.init(pid=pid, epoch=e0)[0] == ErrorCode.producer_fenced
    assert h.add(pid2, e2, [("a", 1)]) == ErrorCode.none


def test_wrong_producer_id_and_unknown_id():
    h = Harness()
    _, pid, epoch = h.init()
    assert h.add(pid + 1, epoch, [("a", 0)]) == ErrorCode.invalid_producer_id_mapping
    assert h.add(pid, epoch, [("a", 0)], tid="other") == ErrorCode.invalid_producer_id_mapping


def test_timeout_aborts_and_bumps_epoch():
    h = Harness()
    _, pid, epoch = h.init(timeout=1000)
    h.add(pid, epoch, [("a", 0)], now=100)
    h.coord.tick(1000)
    assert h.state() == TxnState.ONGOING  # not yet: started at 100
    h.coord.tick(1101)
    m = h.coord.txns[TID]
    assert m.state == TxnState.PREPARE_ABORT and m.producer_epoch == epoch + 1
    h.deliver_markers()
    assert h.state() == TxnState.COMPLETE_ABORT
    # The silent producer comes back: fenced.
    assert h.end(pid, epoch, True) == ErrorCode.producer_fenced
    assert any(r["detail"].endswith("expired)") or "expired" in r["detail"] for k, r in h.rows if k == "event")


def test_fence_state_is_visible_while_the_abort_is_logged():
    h = Harness(auto=False)
    h.init()
    h.finish_appends()
    m = h.coord.txns[TID]
    h.add(m.producer_id, m.producer_epoch, [("a", 0)])
    h.finish_appends()
    h.coord.tick(10_000_000)
    assert h.coord.row(m)["state"] == "PrepareEpochFence"
    assert h.end(m.producer_id, m.producer_epoch, True) == ErrorCode.concurrent_transactions
    h.finish_appends()
    assert m.state == TxnState.PREPARE_ABORT


def test_not_coordinator_and_loading():
    h = Harness()
    p = partition_for(TID, NP)
    h.owned[p] = "no"
    assert h.init()[0] == ErrorCode.not_coordinator
    h.owned[p] = "loading"
    assert h.init()[0] == ErrorCode.coordinator_load_in_progress
    h.owned[p] = "yes"
    assert h.init(timeout=10**9)[0] == ErrorCode.invalid_transaction_timeout


def test_failed_log_write_is_reported_and_state_unchanged():
    h = Harness(auto=False)
    h.init()
    h.finish_appends()
    m = h.coord.txns[TID]
    out = []
    h.coord.add_partitions(TID, m.producer_id, m.producer_epoch, [("a", 0)], 0, out.append)
    h.finish_appends(ErrorCode.not_enough_replicas)
    assert out == [ErrorCode.coordinator_not_available] and m.state == TxnState.EMPTY and m.pending is None


def test_lost_leadership_mid_write_answers_not_coordinator():
    h = Harness(auto=False)
    out = []
    h.coord.init_producer_id(TID, 1000, -1, -1, 0, lambda *a: out.append(a))
    h.owned[partition_for(TID, NP)] = "no"
    h.finish_appends()
    assert out[0][0] == ErrorCode.not_coordinator


def test_add_offsets_adds_the_groups_offsets_partition():
    h = Harness()
    _, pid, epoch = h.init()
    out = []
    h.coord.add_offsets(TID, pid, epoch, "g1", 0, out.append)
    assert out == [ErrorCode.none]
    assert h.coord.txns[TID].partitions == {(OFFSETS_TOPIC, group_partition("g1", NP))}


def test_each_new_partition_set_and_add_offsets_log_ongoing_again():
    # Kafka's handleAddPartitionsToTransaction logs Ongoing whenever partitions are new to the
    # transaction; AddOffsetsToTxn goes through it with the group's __consumer_offsets partition.
    h = Harness()
    _, pid, epoch = h.init()
    h.add(pid, epoch, [("a", 0)])
    h.add(pid, epoch, [("a", 0), ("b", 0)])
    h.coord.add_offsets(TID, pid, epoch, "g1", 0, lambda code: None)
    h.end(pid, epoch, True)
    h.deliver_markers()
    logged = [decode_txn_value(v) for _, v in h.log[partition_for(TID, NP)]]
    assert [v["state"] for v in logged] == [TxnState.EMPTY] + [TxnState.ONGOING] * 3 + [
        TxnState.PREPARE_COMMIT, TxnState.COMPLETE_COMMIT]
    assert logged[3]["partitions"] == {("a", 0), ("b", 0), (OFFSETS_TOPIC, group_partition("g1", NP))}


def test_recovery_mid_prepare_commit_finishes_the_commit():
    h = Harness()
    _, pid, epoch = h.init()
    h.add(pid, epoch, [("a", 0), ("a", 1)])
    h.end(pid, epoch, True)
    assert h.state() == TxnState.PREPARE_COMMIT
    p = partition_for(TID, NP)
    log = list(h.log[p])
    # The coordinator dies before the markers are written; another broker takes over.
    h2 = Harness()
    h2.owned[p] = "yes"
    n = h2.coord.load_partition(p, 1, log, now_ms=50)
    assert n == 3
    m = h2.coord.txns[TID]
    assert (m.state, m.producer_id, m.producer_epoch) == (TxnState.PREPARE_COMMIT, pid, epoch)
    (coord_epoch, mpid, _, commit, parts, _), = h2.markers
    assert coord_epoch == 1 and mpid == pid and commit and sorted(parts) == [("a", 0), ("a", 1)]
    h2.deliver_markers()
    assert m.state == TxnState.COMPLETE_COMMIT
    assert decode_txn_value(h2.log[p][-1][1])["state"] == TxnState.COMPLETE_COMMIT
    # The old coordinator's late marker completion does nothing once it lost the partition.
    h.coord.unload_partition(p)
    h.deliver_markers()
    assert TID not in h.coord.txns


def test_recovery_keeps_fencing_and_tombstones_remove():
    h = Harness()
    _, pid, e0 = h.init()
    h.init()  # epoch bump by a second instance
    p = partition_for(TID, NP)
    h2 = Harness()
    h2.coord.load_partition(p, 3, h.log[p], now_ms=0)
    assert h2.coord.txns[TID].producer_epoch == e0 + 1
    assert h2.add(pid, e0, [("a", 0)]) == ErrorCode.producer_fenced
    h3 = Harness()
    h3.coord.load_partition(p, 4, [*h.log[p], (txn_log_key(TID), None)], now_ms=0)
    assert TID not in h3.coord.txns


def test_idle_transactional_id_expires_with_a_tombstone():
    h = Harness()
    h.init(now=0)
    h.coord.tick(50_000)
    assert TID in h.coord.txns
    h.coord.tick(100_001)
    assert TID not in h.coord.txns
    p = partition_for(TID, NP)
    assert h.log[p][-1] == (txn_log_key(TID), None)


def test_epoch_exhaustion_takes_a_new_producer_id():
    h = Harness()
    _, pid, _ = h.init()
    h.coord.txns[TID].producer_epoch = 32766
    code, pid2, epoch2 = h.init()
    assert code == ErrorCode.none and pid2 != pid and epoch2 == 0


@pytest.mark.parametrize("commit", [True, False])
def test_many_ids_are_independent(commit):
    h = Harness()
    ids = [f"app-{i}" for i in range(20)]
    got = {t: h.init(tid=t) for t in ids}
    assert len({g[1] for g in got.values()}) == 20  # distinct producer ids
    for t, (_, pid, epoch) in got.items():
        assert h.add(pid, epoch, [("x", hash(t) % 3)], tid=t) == ErrorCode.none
    for t, (_, pid, epoch) in got.items():
        assert h.end(pid, epoch, commit, tid=t) == ErrorCode.none
    h.deliver_markers()
    done = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
    assert all(h.coord.txns[t].state == done for t in ids)
