"""Transactions on a real cluster: atomic commit/abort over several partitions, the last
stable offset, read_committed vs read_uncommitted, fencing of a zombie producer."""

from __future__ import annotations

import time

import pytest

from kafkalab import TopicPartition
from kafkalab.client.producer import KafkaException
from kafkalab.cluster import wait_until
from kafkalab.protocol.errors import ErrorCode

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = "txn-out"
PARTS = 3


def read_all(cluster, isolation, expected_min=0, timeout=10.0, settle=0.5):
    """Everything readable from every partition of T (values), consuming until nothing more
    has come for `settle` s after at least expected_min records."""
    c = cluster.consumer({"isolation.level": isolation, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(T, p, 0) for p in range(PARTS)])
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            msgs = c.consume(num_messages=500, timeout=0.2)
            new = [m.value() for m in msgs if m.error() is None]
            if new:
                got += new
                quiet_since = time.monotonic()
            elif len(got) >= expected_min and time.monotonic() - quiet_since > settle:
                break
        return got
    finally:
        c.close()


def txn_producer(cluster, tid, **extra):
    return cluster.producer({"transactional.id": tid, "linger.ms": 2, **extra})


def test_commit_and_abort_across_partitions(cluster):
    cluster.create_topic(T, partitions=PARTS, replication_factor=3, config={"min.insync.replicas": "2"})
    p = txn_producer(cluster, "app-1")
    p.init_transactions(20)
    committed = [f"c{i}".encode() for i in range(30)]
    aborted = [f"a{i}".encode() for i in range(30)]
    p.begin_transaction()
    for i, v in enumerate(committed):
        p.produce(T, v, partition=i % PARTS)
    p.commit_transaction(20)
    p.begin_transaction()
    for i, v in enumerate(aborted):
        p.produce(T, v, partition=i % PARTS)
    p.flush(10)  # the aborted records really are in the log
    p.abort_transaction(20)
    p.begin_transaction()
    p.produce(T, b"last", partition=0)
    p.commit_transaction(20)
    rc = read_all(cluster, "read_committed", expected_min=31)
    assert sorted(rc) == sorted([*committed, b"last"])
    ru = read_all(cluster, "read_uncommitted", expected_min=61)
    assert sorted(ru) == sorted([*committed, *aborted, b"last"])
    # The coordinator published its states and the markers.
    rows = cluster.metrics.transactions()
    assert not rows.empty and {"Ongoing", "PrepareCommit", "CompleteCommit", "CompleteAbort"} <= set(
        rows[rows.transactional_id == "app-1"]["state"])
    ev = cluster.metrics.events()
    assert (ev["event"] == "txn_marker").sum() >= 2 * PARTS


def test_open_transaction_holds_read_committed_at_the_lso(cluster):
    cluster.create_topic(T, partitions=PARTS, replication_factor=3)
    plain = cluster.producer({"linger.ms": 0})
    for i in range(5):
        plain.produce(T, f"before{i}".encode(), partition=0)
    plain.flush(10)
    p = txn_producer(cluster, "app-lso")
    p.init_transactions(20)
    p.begin_transaction()
    p.produce(T, b"open", partition=0)
    p.flush(10)
    for i in range(5):  # non-transactional records after the open transaction
        plain.produce(T, f"after{i}".encode(), partition=0)
    plain.flush(10)
    rc = read_all(cluster, "read_committed", expected_min=5, settle=1.0)
    assert sorted(rc) == sorted(f"before{i}".encode() for i in range(5))  # held at the LSO
    ru = read_all(cluster, "read_uncommitted", expected_min=11)
    assert len(ru) == 11
    p.commit_transaction(20)
    rc = read_all(cluster, "read_committed", expected_min=11)
    assert len(rc) == 11 and b"open" in rc


def test_second_instance_fences_the_first(cluster):
    cluster.create_topic(T, partitions=PARTS, replication_factor=3)
    first = txn_producer(cluster, "app-fence")
    first.init_transactions(20)
    first.begin_transaction()
    first.produce(T, b"zombie", partition=1)
    first.flush(10)
    second = txn_producer(cluster, "app-fence")
    second.init_transactions(20)  # aborts the first's open transaction, bumps the epoch
    second.begin_transaction()
    second.produce(T, b"fresh", partition=1)
    second.commit_transaction(20)
    with pytest.raises(KafkaException) as e:
        first.commit_transaction(10)
    err = e.value.args[0]
    assert err.fatal() and err.code() in (ErrorCode.producer_fenced, ErrorCode.invalid_producer_epoch)
    with pytest.raises(KafkaException):
        first.begin_transaction()  # fatal: the zombie can do nothing more
    assert read_all(cluster, "read_committed", expected_min=1) == [b"fresh"]


def test_coordinator_aborts_a_silent_producer(cluster):
    cluster.create_topic(T, partitions=PARTS, replication_factor=3)
    p = txn_producer(cluster, "app-timeout", **{"transaction.timeout.ms": 1500})
    p.init_transactions(20)
    p.begin_transaction()
    p.produce(T, b"forgotten", partition=2)
    p.flush(10)

    def aborted():
        rows = cluster.metrics.transactions()
        rows = rows[rows.transactional_id == "app-timeout"] if not rows.empty else rows
        return not rows.empty and "CompleteAbort" in set(rows["state"])
    wait_until(aborted, 15, "the coordinator to abort the timed-out transaction")
    with pytest.raises(KafkaException) as e:
        p.commit_transaction(10)
    assert e.value.args[0].fatal()
    # The partition's LSO moved past the aborted transaction: later commits are readable.
    q = txn_producer(cluster, "app-timeout-2")
    q.init_transactions(20)
    q.begin_transaction()
    q.produce(T, b"next", partition=2)
    q.commit_transaction(20)
    assert read_all(cluster, "read_committed", expected_min=1) == [b"next"]


def test_transactional_api_misuse_is_a_clear_error(cluster):
    cluster.create_topic(T, partitions=1, replication_factor=1)
    p = txn_producer(cluster, "app-misuse")
    with pytest.raises(KafkaException, match="not allowed in state UNINITIALIZED"):
        p.begin_transaction()
    p.init_transactions(20)
    with pytest.raises(KafkaException, match="outside begin_transaction"):
        p.produce(T, b"x")
    plain = cluster.producer({})
    with pytest.raises(KafkaException, match="set transactional.id"):
        plain.init_transactions(1)


def test_coordinator_failover_mid_transaction(cluster):
    from kafkalab.broker.txn_coordinator import TRANSACTION_STATE_TOPIC, partition_for
    cluster.create_topic(T, partitions=PARTS, replication_factor=3, config={"min.insync.replicas": "2"})
    tid = "app-failover"
    p = txn_producer(cluster, tid)
    p.init_transactions(20)
    p.begin_transaction()
    for i in range(9):
        p.produce(T, f"v{i}".encode(), partition=i % PARTS)
    p.flush(10)  # AddPartitionsToTxn (Ongoing) is logged and replicated
    tp = partition_for(tid, cluster.config["transaction.state.log.num.partitions"])
    coordinator = int(cluster.describe_topic(TRANSACTION_STATE_TOPIC).set_index("partition").loc[tp].leader)
    cluster.kill_broker(coordinator)
    p.commit_transaction(30)  # the client finds the new coordinator, which loaded Ongoing
    rc = read_all(cluster, "read_committed", expected_min=9)
    assert sorted(rc) == sorted(f"v{i}".encode() for i in range(9))
    ev = cluster.metrics.events()
    loads = ev[(ev["event"] == "txn_load") & (ev["partition"] == tp)]
    assert loads["node"].nunique() >= 2  # a second broker took the partition over
