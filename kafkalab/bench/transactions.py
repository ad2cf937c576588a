"""Transactions: producer throughput against records per transaction (1, 10, 100, 1000),
with the plain idempotent producer measured in the same run as the reference.

Every transaction costs AddPartitionsToTxn, EndTxn (PrepareCommit and CompleteCommit written
to __transaction_state with acks=all) and a COMMIT marker per partition, whatever its size:
the deep-dive's advice to batch many records per transaction shows as the gap closing from
1 to 1000 records per transaction. (Register as BENCHES["transactions"] in bench/__init__.py.)
"""

from __future__ import annotations

import time
from typing import Any

TOPIC = "bench-txn"


def _idempotent(cluster: Any, records: int, value: bytes, partitions: int) -> float:
    p = cluster.producer({"acks": "all", "enable.idempotence": True, "linger.ms": 5})
    try:
        t0 = time.perf_counter()
        for i in range(records):
            p.produce(TOPIC, value, partition=i % partitions)
            if i % 1000 == 999:
                p.poll(0)
        if p.flush(120):
            raise RuntimeError("the idempotent producer did not deliver everything in 120 s")
        return time.perf_counter() - t0
    finally:
        p.close()


def _transactional(cluster: Any, tid: str, per_txn: int, txns: int, value: bytes,
                   partitions: int) -> tuple[float, list[float]]:
    p = cluster.producer({"transactional.id": tid, "linger.ms": 5})
    try:
        p.init_transactions(60)
        commit_ms: list[float] = []
        t0 = time.perf_counter()
        n = 0
        for _ in range(txns):
            p.begin_transaction()
            for _ in range(per_txn):
                p.produce(TOPIC, value, partition=n % partitions)
                n += 1
            c0 = time.perf_counter()
            p.commit_transaction(60)
            commit_ms.append((time.perf_counter() - c0) * 1000)
        return time.perf_counter() - t0, commit_ms
    finally:
        p.close()


def run(records: int = 2000, sizes: tuple[int, ...] = (1, 10, 100, 1000), max_txns: int = 200,
        value_bytes: int = 100, partitions: int = 3, brokers: int = 3) -> list[dict[str, Any]]:
    """records per setting (fewer transactions than records/size when max_txns caps them)."""
    import statistics

    from kafkalab import Cluster

    value = b"x" * value_bytes
    rows: list[dict[str, Any]] = []
    with Cluster(brokers=brokers) as cluster:
        cluster.create_topic(TOPIC, partitions=partitions, replication_factor=min(3, brokers),
                             config={"min.insync.replicas": min(2, brokers)})
        _idempotent(cluster, min(records, 200), value, partitions)  # warm-up: connections, metadata
        ref_s = _idempotent(cluster, records, value, partitions)
        ref_rate = records / ref_s
        rows.append({"mode": "idempotent", "records_per_txn": None, "transactions": 0, "records": records,
                     "seconds": ref_s, "records_per_s": ref_rate, "vs_idempotent": 1.0,
                     "commit_ms_median": None})
        for size in sizes:
            txns = max(1, min(max_txns, records // size))
            secs, commits = _transactional(cluster, f"bench-{size}", size, txns, value, partitions)
            n = txns * size
            rows.append({"mode": "transactional", "records_per_txn": size, "transactions": txns, "records": n,
                         "seconds": secs, "records_per_s": n / secs, "vs_idempotent": (n / secs) / ref_rate,
                         "commit_ms_median": statistics.median(commits)})
    return rows

