"""Consume-transform-produce with exactly-once output: the read-process-write loop that
Kafka Streams' exactly_once_v2 runs, written out with the transactional Producer.

Each round: consume a batch (read_committed, no auto-commit), begin a transaction, produce
the transformed records, send the consumer's positions with send_offsets_to_transaction()
(AddOffsetsToTxn + TxnOffsetCommit, fenced by the consumer's generation: KIP-447), commit.
Output records and input offsets are committed together or not at all, so a worker killed at
any point and restarted (or replaced after a rebalance) neither loses nor duplicates output
for read_committed readers.

Errors: an abortable one aborts the round and seeks the consumer back to where the round
started (its offsets were not committed); when even the abort fails, or the outcome of the
commit is unknown (it timed out), the worker starts over with a new consumer and producer,
as a restarted process would: init_transactions() settles the old transaction either way and
the group's committed offsets say where to resume. A fatal error (fenced by a newer instance
of the same transactional.id) ends the worker.

`spawn_eos_workers(cluster, group, n, source, sink)` starts n worker processes; each has its
own stable transactional.id (EOS v2: one per worker, not per input partition).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from kafkalab.client.message import OFFSET_INVALID, TopicPartition

log = logging.getLogger(__name__)

Transform = Callable[[bytes | None, bytes | None], tuple[bytes | None, bytes | None]]
RETRY_BACKOFF_S = 0.1


class RestartNeeded(Exception):
    """The round's outcome is unknown or the producer cannot go on: start over."""


def _identity(key: bytes | None, value: bytes | None) -> tuple[bytes | None, bytes | None]:
    return key, value


def _is_fatal(e: BaseException) -> bool:
    err = e.args[0] if e.args else None
    return bool(getattr(err, "fatal", lambda: False)())


def _group_metadata(consumer: Any, group: str) -> Any:
    get = getattr(consumer, "consumer_group_metadata", None)
    return get() if callable(get) else group  # a plain group id skips the generation check


def run_round(consumer: Any, producer: Any, sink: str, group: str, transform: Transform = _identity,
              max_records: int = 100, timeout: float = 0.2, txn_timeout: float = 10.0) -> int:
    """One consume-transform-produce transaction; returns records processed (0: none came).
    On failure the transaction is aborted and the consumer rewound, then the error re-raised;
    RestartNeeded when that was not possible."""
    before = _group_metadata(consumer, group)
    msgs = [m for m in consumer.consume(max_records, timeout=timeout) if m.error() is None]
    if not msgs:
        return 0
    # KIP-447: the offsets are committed under the generation the records were read in. If a
    # rebalance happened while reading, these records may belong to another member now: read
    # again under the new assignment. If one happens later, the coordinator refuses the
    # commit (ILLEGAL_GENERATION) and the transaction aborts.
    meta = _group_metadata(consumer, group)
    if getattr(before, "generation_id", None) != getattr(meta, "generation_id", None):
        _rewind(consumer, _first_offsets(msgs))
        return 0
    producer.begin_transaction()
    first: dict[tuple[str, int], int] = {}
    try:
        next_offsets: dict[tuple[str, int], int] = {}
        for m in msgs:
            key, value = transform(m.key(), m.value())
            producer.produce(sink, value, key=key, partition=m.partition())
            first.setdefault((m.topic(), m.partition()), m.offset())
            next_offsets[(m.topic(), m.partition())] = m.offset() + 1
        positions = [TopicPartition(t, p, o) for (t, p), o in sorted(next_offsets.items())]
        producer.send_offsets_to_transaction(positions, meta, txn_timeout)
        producer.commit_transaction(txn_timeout)
        log.debug("%s committed %s", producer, {k: (first[k], v) for k, v in next_offsets.items()})
    except Exception as e:
        if _is_fatal(e):
            raise
        err = e.args[0] if e.args else None
        if not getattr(err, "txn_requires_abort", lambda: False)() and getattr(err, "retriable", lambda: False)():
            # e.g. commit_transaction() timed out: it may have committed. Only a new
            # init_transactions() tells (it completes or aborts what is left).
            raise RestartNeeded(f"transaction outcome unknown: {e}") from e
        try:
            producer.abort_transaction(txn_timeout)
        except Exception as abort_error:
            raise RestartNeeded(f"abort failed after {e}: {abort_error}") from e
        _rewind(consumer, first)
        raise
    return len(msgs)


def _first_offsets(msgs: list[Any]) -> dict[tuple[str, int], int]:
    first: dict[tuple[str, int], int] = {}
    for m in msgs:
        first.setdefault((m.topic(), m.partition()), m.offset())
    return first


def _rewind(consumer: Any, first: dict[tuple[str, int], int]) -> None:
    """After an abort, read the round's records again: its offsets were not committed, so
    the group's committed offset of each partition is where this round started."""
    for (t, p), offset in first.items():
        try:
            consumer.seek(TopicPartition(t, p, offset))
        except Exception:
            pass  # revoked meanwhile: its next owner starts from the committed offset


def stable_committed(consumer: Any, parts: list[TopicPartition], timeout: float = 30.0) -> list[TopicPartition]:
    """The group's committed offsets of `parts`, waiting while a transaction has offsets
    pending for them (OffsetFetch require_stable answers UNSTABLE_OFFSET_COMMIT until its
    marker lands). Consumer.committed() reads such an answer as "nothing committed", which
    would restart the partition from auto.offset.reset; Kafka's consumer retries instead."""
    from kio.schema.offset_fetch.v8 import request as of_req

    from kafkalab.protocol.errors import ErrorCode, KafkaError
    member = consumer._member
    deadline = time.monotonic() + timeout
    by_topic: dict[str, list[int]] = {}
    for tp in parts:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    req = of_req.OffsetFetchRequest(groups=(of_req.OffsetFetchRequestGroup(
        group_id=member.group_id, topics=tuple(of_req.OffsetFetchRequestTopics(name=t, partition_indexes=tuple(ps))
                                               for t, ps in by_topic.items())),), require_stable=True)
    retry = (ErrorCode.not_coordinator, ErrorCode.coordinator_load_in_progress, ErrorCode.coordinator_not_available,
             ErrorCode.unstable_offset_commit)
    while True:
        code = ErrorCode.request_timed_out
        try:
            resp = consumer._fetcher.request(consumer._coordinator(deadline), lambda: req).result(
                max(0.01, deadline - time.monotonic()))
            g = resp.groups[0]
            codes = [g.error_code] + [p.error_code for t in g.topics for p in t.partitions]
            code = next((c for c in codes if c != ErrorCode.none), ErrorCode.none)
            if code == ErrorCode.none:
                found = {(str(t.name), int(p.partition_index)): int(p.committed_offset)
                         for t in g.topics for p in t.partitions}
                return [TopicPartition(tp.topic, tp.partition, o if (o := found.get((tp.topic, tp.partition), -1)) >= 0
                                       else OFFSET_INVALID) for tp in parts]
            if code not in retry:
                raise KafkaError(code, f"committed offsets of group {member.group_id!r}")
            if code != ErrorCode.unstable_offset_commit and code != ErrorCode.coordinator_load_in_progress:
                member.coordinator = None
        except KafkaError as e:
            if e.code not in retry and not e.retriable and e.code != ErrorCode.network_exception:
                raise
            member.coordinator = None  # e.g. the coordinator's broker was killed: find it again
        except TimeoutError:
            pass
        if time.monotonic() > deadline:
            raise KafkaError(code, f"committed offsets of group {member.group_id!r} not stable in {timeout}s")
        time.sleep(RETRY_BACKOFF_S)  # the marker lands within a tick or two; nothing to wait on here


def _on_assign(consumer: Any, parts: list[TopicPartition]) -> None:
    try:
        offsets = stable_committed(consumer, parts)
    except Exception as e:  # the assignment is taken: without offsets the worker must start over
        raise RestartNeeded(f"no stable committed offsets for {parts}: {e}") from e
    for tp, c in zip(parts, offsets, strict=True):
        tp.offset = c.offset
    log.debug("assigned %s", [(tp.topic, tp.partition, tp.offset) for tp in parts])


def eos_worker(*, parent_pid: int, node: str, brokers: dict[int, str], faults_json: str,
               metrics_endpoint: str | None, group: str, source: str, sink: str, transactional_id: str,
               consumer_config: dict[str, Any], producer_config: dict[str, Any], state_fd: int) -> None:
    """Entry point of a worker process."""
    from kafkalab.client.consumer import Consumer
    from kafkalab.client.context import ClientContext
    from kafkalab.client.producer import Producer
    from kafkalab.metrics_publisher import MetricsPublisher
    from kafkalab.process import die_with_parent
    from kafkalab.transport.faults import FaultTable
    from kafkalab.workloads.worker_state import attach
    die_with_parent(parent_pid)
    state = attach(state_fd)
    if log_dir := os.environ.get("KAFKALAB_EOS_LOG_DIR"):  # per-worker logs, to debug a failing seed
        logging.basicConfig(filename=os.path.join(log_dir, f"{node}.log"), level=logging.DEBUG,
                            format="%(asctime)s %(name)s %(message)s")
    metrics = MetricsPublisher(None, metrics_endpoint, node) if metrics_endpoint else None
    faults = FaultTable.from_json(faults_json)
    incarnation = 0

    def start() -> tuple[Any, Any]:
        nonlocal incarnation
        incarnation += 1
        producer = Producer({**producer_config, "transactional.id": transactional_id},
                            ClientContext(node=f"{node}-out{incarnation}", brokers=brokers, faults=faults,
                                          metrics=metrics))
        while True:
            try:
                producer.init_transactions(30)
                break
            except Exception as e:
                if _is_fatal(e) or state.stop_requested():
                    producer.close(1)
                    raise
                log.info("%s: init_transactions: %s; retrying", node, e)
        consumer = Consumer({**consumer_config, "group.id": group, "isolation.level": "read_committed",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "partition.assignment.strategy": "range"},
                            ClientContext(node=f"{node}-in{incarnation}", brokers=brokers, faults=faults,
                                          metrics=metrics))
        consumer.subscribe([source], on_assign=_on_assign)
        return consumer, producer

    def close(consumer: Any, producer: Any) -> None:
        for close_one in (consumer.close, lambda: producer.close(1)):
            try:
                close_one()
            except Exception:
                log.info("%s: close failed", node, exc_info=True)

    consumer, producer = start()
    try:
        while not state.stop_requested():
            try:
                n = run_round(consumer, producer, sink, group)
            except RestartNeeded as e:
                log.info("%s: starting over: %s", node, e)
                close(consumer, producer)
                consumer, producer = start()
                continue
            except Exception as e:
                if _is_fatal(e):
                    log.warning("%s: fenced, stopping: %s", node, e)
                    return
                log.info("%s: transaction aborted, retrying: %s", node, e)
                time.sleep(RETRY_BACKOFF_S)  # back off before the next round
                continue
            if n:
                state.add(n)
    finally:
        close(consumer, producer)
        if metrics is not None:
            metrics.close()


class EosWorker:
    """A worker process: kill() it (SIGKILL, mid-transaction or not) and start its successor
    with `spawn_eos_worker(..., index)`: the same transactional.id fences what it left."""

    def __init__(self, proc: Any, index: int, transactional_id: str, state: Any):
        self.proc, self.index, self.transactional_id, self._state = proc, index, transactional_id, state

    @property
    def processed(self) -> int:
        return self._state.count

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(timeout=5)

    def stop(self, timeout: float = 10.0) -> None:
        self._state.request_stop()
        self.proc.join(timeout=timeout)
        if self.proc.is_alive():
            self.kill()

    def __repr__(self) -> str:
        return f"<EosWorker {self.index} {self.transactional_id} pid={self.proc.pid} processed={self.processed}>"


def transactional_id_of(group: str, source: str, index: int) -> str:
    return f"{group}-{source}-{index}"


def spawn_eos_worker(cluster: Any, group: str, index: int, source: str, sink: str,
                     producer_config: dict[str, Any] | None = None) -> EosWorker:
    """Worker `index` of `group` (a restart of it if one ran before: same transactional.id)."""
    from kafkalab.config import client_config
    from kafkalab.workloads.worker_state import spawn_worker
    node = f"{group}-eos-{index}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    tid = transactional_id_of(group, source, index)
    proc, state = spawn_worker(eos_worker, node, parent_pid=os.getpid(), node=node,
                               brokers=dict(cluster.broker_endpoints), faults_json=cluster.faults.to_json(),
                               metrics_endpoint=cluster.metrics.endpoint if cluster.metrics else None,
                               group=group, source=source, sink=sink, transactional_id=tid,
                               consumer_config=client_config(cluster.profile, "consumer", None),
                               producer_config=client_config(cluster.profile, "producer",
                                                             {"linger.ms": 5, **(producer_config or {})}))
    return EosWorker(proc, index, tid, state)


def spawn_eos_workers(cluster: Any, group: str, n: int, source: str, sink: str,
                      producer_config: dict[str, Any] | None = None) -> list[EosWorker]:
    """n worker processes, indexes 0..n-1."""
    return [spawn_eos_worker(cluster, group, i, source, sink, producer_config) for i in range(n)]
