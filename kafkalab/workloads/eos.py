"""Consume-transform-produce with exactly-once output: the read-process-write loop that
Kafka Streams' exactly_once_v2 runs, written out with the transactional Producer.

Each round: consume a batch (read_committed, no auto-commit), begin a transaction, produce
the transformed records, send the consumer's positions with send_offsets_to_transaction()
(AddOffsetsToTxn + TxnOffsetCommit), commit. Output records and input offsets are committed
together or not at all, so a worker killed at any point and restarted (or replaced after a
rebalance) neither loses nor duplicates output for read_committed readers. An abortable
error aborts the round and rewinds the consumer to its last committed offsets; a fatal one
(fenced by a newer instance of the same transactional.id) ends the worker.

`spawn_eos_workers(cluster, group, n, source, sink)` starts n worker processes.
Needs the group coordinator to serve TxnOffsetCommit (see kafkalab.broker.txn_offsets).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from kafkalab.client.message import TopicPartition

log = logging.getLogger(__name__)

Transform = Callable[[bytes | None, bytes | None], tuple[bytes | None, bytes | None]]


def _identity(key: bytes | None, value: bytes | None) -> tuple[bytes | None, bytes | None]:
    return key, value


def _group_metadata(consumer: Any, group: str) -> Any:
    get = getattr(consumer, "consumer_group_metadata", None)
    return get() if callable(get) else group  # a plain group id skips the generation check


def run_round(consumer: Any, producer: Any, sink: str, group: str, transform: Transform = _identity,
              max_records: int = 100, timeout: float = 0.2, txn_timeout: float = 30.0) -> int:
    """One consume-transform-produce transaction; returns records processed (0: none came).
    Raises the producer's KafkaException when the transaction had to be aborted."""
    msgs = [m for m in consumer.consume(max_records, timeout=timeout) if m.error() is None]
    if not msgs:
        return 0
    producer.begin_transaction()
    try:
        next_offsets: dict[tuple[str, int], int] = {}
        for m in msgs:
            key, value = transform(m.key(), m.value())
            producer.produce(sink, value, key=key, partition=m.partition())
            next_offsets[(m.topic(), m.partition())] = m.offset() + 1
        positions = [TopicPartition(t, p, o) for (t, p), o in sorted(next_offsets.items())]
        producer.send_offsets_to_transaction(positions, _group_metadata(consumer, group), txn_timeout)
        producer.commit_transaction(txn_timeout)
    except Exception as e:
        err = e.args[0] if e.args else None
        if getattr(err, "fatal", lambda: False)():
            raise
        producer.abort_transaction(txn_timeout)
        _rewind(consumer)
        raise
    return len(msgs)


def _rewind(consumer: Any) -> None:
    """After an abort the consumer re-reads from the group's committed offsets."""
    assigned = consumer.assignment()
    if not assigned:
        return
    for tp in consumer.committed(assigned, timeout=10):
        if tp.offset >= 0:
            consumer.seek(tp)


def eos_worker(*, parent_pid: int, node: str, brokers: dict[int, str], faults_json: str,
               metrics_endpoint: str | None, group: str, source: str, sink: str, transactional_id: str,
               processed: Any, stop: Any) -> None:
    """Entry point of a worker process."""
    import sys
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]

    from kafkalab.client.consumer import Consumer
    from kafkalab.client.context import ClientContext
    from kafkalab.client.producer import Producer
    from kafkalab.metrics_publisher import MetricsPublisher
    from kafkalab.process import die_with_parent
    from kafkalab.transport.faults import FaultTable
    die_with_parent(parent_pid)
    metrics = MetricsPublisher(None, metrics_endpoint, node) if metrics_endpoint else None
    faults = FaultTable.from_json(faults_json)
    consumer = Consumer({"group.id": group, "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"},
                        ClientContext(node=f"{node}-in", brokers=brokers, faults=faults, metrics=metrics))
    producer = Producer({"transactional.id": transactional_id, "linger.ms": 5},
                        ClientContext(node=f"{node}-out", brokers=brokers, faults=faults, metrics=metrics))
    try:
        producer.init_transactions(60)
        consumer.subscribe([source])
        while not stop.is_set():
            try:
                n = run_round(consumer, producer, sink, group)
            except Exception as e:
                err = e.args[0] if e.args else None
                if getattr(err, "fatal", lambda: False)():
                    log.warning("%s: fenced, stopping: %s", node, e)
                    return
                log.info("%s: transaction aborted, retrying: %s", node, e)
                time.sleep(0.1)  # backoff before the next round; nothing here waits on a condition
                continue
            if n:
                with processed.get_lock():
                    processed.value += n
    finally:
        consumer.close()
        producer.close(5)
        if metrics is not None:
            metrics.close()


def spawn_eos_workers(cluster: Any, group: str, n: int, source: str, sink: str) -> list[tuple[Any, Any, Any]]:
    """n worker processes; returns (process, processed counter, stop event) per worker. Each
    worker's transactional.id is stable (group-source-i), so a restarted worker i fences its
    predecessor."""
    import multiprocess

    from kafkalab.process import spawner
    mp = multiprocess.get_context("spawn")
    out = []
    for i in range(n):
        node = f"{group}-eos-{i + 1}-{os.getpid()}"
        processed, stop = mp.Value("q", 0), mp.Event()
        proc = spawner().spawn(eos_worker, node, parent_pid=os.getpid(), node=node,
                               brokers=dict(cluster.broker_endpoints), faults_json=cluster.faults.to_json(),
                               metrics_endpoint=cluster.metrics.endpoint if cluster.metrics else None,
                               group=group, source=source, sink=sink, transactional_id=f"{group}-{source}-{i}",
                               processed=processed, stop=stop)
        out.append((proc, processed, stop))
    return out
