"""Sender: the producer's I/O thread. Drains the accumulator into ProduceRequests per leader.

It keeps metadata for the topics produce() has seen, gets a producer id (InitProducerId) when
enable.idempotence is on, sends at most max.in.flight.requests.per.connection requests per
broker, retries retriable errors after retry.backoff.ms (refreshing metadata when the leader
moved), fails batches older than delivery.timeout.ms, and queues delivery reports for the
application's thread: callbacks never run here.

With a transactional.id the sender also keeps the client side of a transaction (Kafka's
TransactionManager): the coordinator of the id (FindCoordinator key_type 1), requests to it
that are retried on CONCURRENT_TRANSACTIONS and coordinator moves (`coordinator_call`), and
AddPartitionsToTxn for every partition before its first batch of the transaction goes out.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from kafkalab.client.accumulator import ProducerBatch, RecordAccumulator
from kafkalab.client.context import ClientContext
from kafkalab.client.io_thread import IoThread
from kafkalab.client.metadata import METADATA_ERRORS
from kafkalab.client.transaction_state import TxnClientState, TxnState
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import ZMQ_VERSIONS, request_class, schema_module
from kafkalab.protocol.build import ms, produce_request, produce_results
from kafkalab.protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)

GROUP_KEY, TXN_KEY = 0, 1  # FindCoordinator key types
CONCURRENT_TXN_BACKOFF_S = 0.02  # Kafka's client retries CONCURRENT_TRANSACTIONS quickly
COORDINATOR_ERRORS = (ErrorCode.not_coordinator, ErrorCode.coordinator_not_available,
                      ErrorCode.network_exception, ErrorCode.request_timed_out)
FATAL_TXN_ERRORS = (ErrorCode.producer_fenced, ErrorCode.invalid_producer_epoch,
                    ErrorCode.transactional_id_authorization_failed, ErrorCode.invalid_producer_id_mapping,
                    ErrorCode.unsupported_version)


@dataclass(eq=False)
class CoordinatorCall:
    """One request to a coordinator, retried until it succeeds, fails for good or times out."""

    key_type: int
    key: str
    make: Callable[[], Any]
    error_of: Callable[[Any], ErrorCode]  # the response's error (first failing partition)
    future: Future
    deadline: float
    next_try: float = 0.0
    in_flight: bool = False
    last_error: KafkaError | None = None


@dataclass(slots=True)
class DeliveryReport:
    batch: ProducerBatch
    error: KafkaError | None
    base_offset: int
    log_append_time_ms: int


class ReportQueue:
    """Delivery reports from the sender to poll()/flush(), with a condition to wait on."""

    def __init__(self) -> None:
        self.items: deque[DeliveryReport] = deque()
        self.cond = threading.Condition(threading.Lock())

    def put(self, report: DeliveryReport) -> None:
        self.items.append(report)
        with self.cond:
            self.cond.notify_all()

    def wait(self, timeout_s: float) -> None:
        with self.cond:
            if not self.items:
                self.cond.wait(timeout_s)


class Sender(IoThread):
    client_type = "producer"

    def __init__(self, ctx: ClientContext, cfg: dict[str, Any], accumulator: RecordAccumulator,
                 lock: threading.Lock, memory_freed: threading.Condition,
                 metadata_changed: threading.Condition, reports: ReportQueue):
        super().__init__(ctx, cfg["request.timeout.ms"], name=f"kafkalab-sender-{ctx.node}")
        self.cfg = cfg
        self.acc = accumulator
        self.lock = lock
        self.memory_freed = memory_freed
        self.metadata_changed = metadata_changed
        self.reports = reports
        self.acks = cfg["acks"]
        self.max_in_flight = cfg["max.in.flight.requests.per.connection"]
        self.retries = cfg["retries"]
        self.backoff_s = cfg["retry.backoff.ms"] / 1000.0
        self.metadata_max_age_s = cfg["metadata.max.age.ms"] / 1000.0
        self.idempotent = cfg["enable.idempotence"]
        self.compression = cfg["compression.type"]
        self.producer_id = -1
        self.producer_epoch = -1
        self._pid_next_try = 0.0
        self._pid_in_flight = False
        # Topics produce() asked about; their (partition count, available) land in topic_info.
        self.wanted: set[str] = set()
        self.topic_info: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.topic_errors: dict[str, tuple[KafkaError, int]] = {}  # error, answers in a row
        # Told (outside the lock) which topics' entries in topic_info changed or went away
        self.on_topic_change: Callable[[list[str]], None] | None = None
        self.need_metadata = False
        self._next_metadata = 0.0  # metadata.max.age.ms
        self._metadata_not_before = 0.0  # retry.backoff.ms between refreshes
        self._in_flight: dict[int, list[ProducerBatch]] = {}
        self._token = 0
        self.closing = False
        self.records_sent = self.bytes_sent = self.batches_sent = self.errors = 0
        self.retries_done = 0
        self._latencies_ms: collections.deque[float] = collections.deque(maxlen=1000)
        self.transactional_id: str | None = cfg["transactional.id"]
        self.txn = TxnClientState()
        self.calls: list[CoordinatorCall] = []
        self.coordinators: dict[tuple[int, str], int] = {}  # (key type, key) -> broker id

    # ---- metadata -----------------------------------------------------------------------
    def want_topic(self, topic: str) -> None:
        """Called from produce() (any thread): fetch this topic's metadata."""
        self.wanted.add(topic)
        self.need_metadata = True
        self.waker.wake()

    def on_metadata(self, results: dict[str, Any]) -> None:
        assert self.net is not None
        md = self.net.metadata
        changed = []
        for topic in results["topics"]:
            info = md.partition_info(topic)
            err = md.topic_error(topic)
            if err is not None:
                seen = self.topic_errors.get(topic, (err, 0))[1]
                self.topic_errors[topic] = (err, seen + 1)
                if self.topic_info.pop(topic, None) is not None:
                    changed.append(topic)
            elif info is not None:
                self.topic_errors.pop(topic, None)
                if self.topic_info.get(topic) != info:
                    changed.append(topic)
                self.topic_info[topic] = info
        if changed and self.on_topic_change is not None:
            self.on_topic_change(changed)
        with self.metadata_changed:
            self.metadata_changed.notify_all()

    def _refresh_metadata(self, now: float) -> None:
        assert self.net is not None
        if not self.wanted:
            return
        if self.net.refresh_metadata(sorted(self.wanted), now, self._metadata_done):
            self.need_metadata = False
            self._next_metadata = now + self.metadata_max_age_s
            self._metadata_not_before = now + self.backoff_s

    def _metadata_done(self, results: Any) -> None:
        if isinstance(results, Exception):
            self.need_metadata = True
            return
        self.on_metadata(results)
        if any(t in self.topic_errors for t in self.wanted):
            self.need_metadata = True  # retry (auto-creation, a topic still being created)

    # ---- producer id ------------------------------------------------------------------
    def _init_producer_id(self, now: float) -> None:
        assert self.net is not None
        if self._pid_in_flight or now < self._pid_next_try:
            return
        cls = request_class(ApiKey.INIT_PRODUCER_ID, ZMQ_VERSIONS[ApiKey.INIT_PRODUCER_ID])
        req = cls(transactional_id=None, transaction_timeout=ms(self.cfg["transaction.timeout.ms"]),
                  producer_id=-1, producer_epoch=-1)
        self._pid_in_flight = True
        self.net.send(self.net.any_broker(), req, self._pid_done, now)

    def _pid_done(self, resp: Any) -> None:
        self._pid_in_flight = False
        err = resp if isinstance(resp, KafkaError) else (
            KafkaError(resp.error_code) if resp.error_code else None)
        if isinstance(resp, BaseException) and not isinstance(resp, KafkaError):
            raise resp
        if err is not None:
            self._pid_next_try = time.monotonic() + self.backoff_s
            if not err.retriable:
                self.errors += 1
            return
        self.producer_id, self.producer_epoch = resp.producer_id, resp.producer_epoch
        with self.lock:
            self.acc.reset_sequences()

    # ---- the loop ---------------------------------------------------------------------
    def step(self, now: float) -> float:
        now_ms = now * 1000.0
        if (self.need_metadata and now >= self._metadata_not_before) or now >= self._next_metadata:
            self._refresh_metadata(now)
        if self.idempotent and self.producer_id < 0 and self.transactional_id is None:
            self._init_producer_id(now)
        assert self.net is not None
        sleep_txn = self._txn_step(now) if self.transactional_id is not None else 0.25
        leader_for = self.net.metadata.leader_for
        sleep_s = 0.25
        drained: list[tuple[int, list[ProducerBatch]]] = []  # one Produce request each, in order
        with self.lock:
            expired = self.acc.expire(now_ms)
            if self.idempotent and self.producer_id < 0:
                check = None
            else:
                sendable = self._txn_sendable if self.transactional_id is not None else None
                check = self.acc.ready(now_ms, leader_for, sendable)
                room: dict[int, int] = {}
                for n in check.ready_nodes:
                    room[n] = self.max_in_flight - self.net.in_flight(n)
                    self.acc.update_node_latency(n, now_ms, room[n] > 0)
                nodes = [n for n, free in room.items() if free > 0]
                while nodes:
                    # One request per node per round; while a node is still ready (another
                    # full batch waits: the producer outran this thread) and may have more in
                    # flight, drain again now rather than after another wake-up and lock.
                    got = self.acc.drain(nodes, leader_for, now_ms, self.producer_id, sendable)
                    for n, batches in got.items():
                        drained.append((n, batches))
                        room[n] -= 1
                    if not got:
                        break
                    again = self.acc.ready(now_ms, leader_for, sendable).ready_nodes
                    nodes = [n for n in got if room[n] > 0 and n in again]
            if expired:
                self.memory_freed.notify_all()
        if expired and self.idempotent and self.transactional_id is None:
            # An expired batch leaves a hole in the sequence: start a new one (Kafka 2.5+).
            self._new_producer_id("a batch expired")
        for b in expired:
            self._report(b, self._expired(b, now_ms, b.last_error), -1, -1)
        if check is not None:
            if check.unknown_leader_topics:
                self.wanted |= check.unknown_leader_topics
                self.need_metadata = True
                sleep_s = min(sleep_s, self.backoff_s)
            sleep_s = min(sleep_s, check.next_ready_in_ms / 1000.0)
        else:
            sleep_s = min(sleep_s, self.backoff_s)
        for node, batches in drained:
            self._send(node, batches, now)
        return min(sleep_s, sleep_txn)

    # ---- transactions (Kafka's TransactionManager) ------------------------------------
    def _txn_sendable(self, tp: tuple[str, int]) -> bool:
        return tp in self.txn.added

    def coordinator_call(self, key_type: int, key: str, make: Callable[[], Any],
                         error_of: Callable[[Any], ErrorCode], timeout_s: float) -> Future:
        """From any thread: send make() to the coordinator of `key`, retrying retriable
        errors (finding the coordinator again when it moved) until timeout_s."""
        fut: Future = Future()
        call = CoordinatorCall(key_type, key, make, error_of, fut, time.monotonic() + timeout_s)
        self.submit(lambda _net: self.calls.append(call))
        return fut

    def _txn_step(self, now: float) -> float:
        txn = self.txn
        if txn.state in _SENDING and txn.error is None:
            with self.lock:
                new = self.acc.partitions_with_batches() - txn.added - txn.adding
            if new:
                self._add_partitions(sorted(new), now)
        elif txn.error is not None:
            self._fail_unadded(txn.error)
        wait = 0.25
        for call in list(self.calls):
            if call.in_flight:
                continue
            if now >= call.deadline:
                self.calls.remove(call)
                if not call.future.done():
                    call.future.set_exception(call.last_error or KafkaError(
                        ErrorCode.request_timed_out, f"no answer from the coordinator of {call.key!r} in time"))
                continue
            if now < call.next_try:
                wait = min(wait, call.next_try - now)
                continue
            self._try(call, now)
        return wait

    def _add_partitions(self, tps: list[tuple[str, int]], now: float) -> None:
        txn = self.txn
        generation = txn.start_adding(set(tps))
        cls = request_class(ApiKey.ADD_PARTITIONS_TO_TXN, ZMQ_VERSIONS[ApiKey.ADD_PARTITIONS_TO_TXN])
        topic_cls = schema_module(cls).AddPartitionsToTxnTopic
        by_topic: dict[str, list[int]] = {}
        for t, p in tps:
            by_topic.setdefault(t, []).append(p)

        def make() -> Any:
            return cls(v3_and_below_transactional_id=self.transactional_id,
                       v3_and_below_producer_id=self.producer_id, v3_and_below_producer_epoch=self.producer_epoch,
                       v3_and_below_topics=tuple(topic_cls(name=t, partitions=tuple(ps))
                                                 for t, ps in by_topic.items()))

        fut = Future()
        call = CoordinatorCall(TXN_KEY, str(self.transactional_id), make, _add_partitions_error, fut,
                               now + self.cfg["max.block.ms"] / 1000)

        def done(f: Future) -> None:
            err = f.exception()
            if not txn.adding_done(generation, set(tps), err is None):
                return  # that transaction is over
            if err is None:
                self.waker.wake()
            else:
                kerr = err if isinstance(err, KafkaError) else KafkaError(ErrorCode.unknown_server_error, str(err))
                txn.fail(kerr, fatal=is_fatal_txn_error(kerr))

        fut.add_done_callback(done)
        self.calls.append(call)
        self._try(call, now)

    def _fail_unadded(self, err: KafkaError) -> None:
        """The transaction failed: its batches for partitions never added will not be sent."""
        with self.lock:
            gone = self.acc.abort_undrained(keep=lambda b: b.tp in self.txn.added)
            if gone:
                self.memory_freed.notify_all()
        for b in gone:
            self._report(b, err, -1, -1)

    def _try(self, call: CoordinatorCall, now: float) -> None:
        assert self.net is not None
        node = self.coordinators.get((call.key_type, call.key))
        call.in_flight = True
        if node is None:
            cls = request_class(ApiKey.FIND_COORDINATOR, ZMQ_VERSIONS[ApiKey.FIND_COORDINATOR])
            req = cls(key_type=call.key_type, coordinator_keys=(call.key,))
            self._send_call(call, self.net.any_broker(), req, self._found, now)
        else:
            self._send_call(call, node, call.make(), self._answered, now)

    def _send_call(self, call: CoordinatorCall, node: int, req: Any, then: Any, now: float) -> None:
        assert self.net is not None
        try:
            self.net.send(node, req, lambda resp: then(call, node, resp), now)
        except KafkaError as e:
            then(call, node, e)

    def _retry(self, call: CoordinatorCall, err: KafkaError, backoff_s: float) -> None:
        call.in_flight = False
        call.last_error = err
        call.next_try = time.monotonic() + backoff_s

    def _found(self, call: CoordinatorCall, _node: int, resp: Any) -> None:
        if isinstance(resp, BaseException):
            self._retry(call, resp if isinstance(resp, KafkaError) else KafkaError(ErrorCode.unknown_server_error),
                        self.backoff_s)
            return
        c = resp.coordinators[0]
        if c.error_code != ErrorCode.none or int(c.node_id) < 0:
            self._retry(call, KafkaError(c.error_code, f"no coordinator for {call.key!r} yet"), self.backoff_s)
            return
        self.coordinators[(call.key_type, call.key)] = int(c.node_id)
        call.in_flight = False
        call.next_try = 0.0
        self.waker.wake()

    def _answered(self, call: CoordinatorCall, node: int, resp: Any) -> None:
        code = resp.code if isinstance(resp, KafkaError) else call.error_of(resp)
        if code == ErrorCode.none:
            self.calls.remove(call)
            if not call.future.done():
                call.future.set_result(resp)
            return
        err = resp if isinstance(resp, KafkaError) else KafkaError(code)
        if code in COORDINATOR_ERRORS:
            self.coordinators.pop((call.key_type, call.key), None)  # it moved: look it up again
        if code == ErrorCode.concurrent_transactions:
            self._retry(call, err, CONCURRENT_TXN_BACKOFF_S)
        elif err.retriable:
            self._retry(call, err, self.backoff_s)
        else:
            self.calls.remove(call)
            if not call.future.done():
                call.future.set_exception(err)

    def _send(self, node: int, batches: list[ProducerBatch], now: float) -> None:
        assert self.net is not None
        topics: dict[str, dict[int, bytes]] = {}
        for b in batches:
            if b.wire is None:
                b.wire = b.builder.build(
                    producer_id=self.producer_id, producer_epoch=self.producer_epoch,
                    base_sequence=b.base_sequence, compression=self.compression,
                    transactional=self.transactional_id is not None)
                self.acc.record_wire_size(b, len(b.wire))
            topics.setdefault(b.topic, {})[b.partition] = b.wire
        req = produce_request(self.acks, self.cfg["request.timeout.ms"], topics,
                              transactional_id=self.cfg["transactional.id"])
        if self.acks == 0:
            # No response comes for acks=0: the batch counts as sent once it is on the socket.
            try:
                self.net.send(node, req, None, now)
            except KafkaError as e:
                self._handle(node, batches, e)
                return
            self._handle(node, batches, None)
            return
        self._token += 1
        token = self._token
        self._in_flight[token] = batches

        sent_at = time.monotonic()

        def done(resp: Any) -> None:
            if self._in_flight.pop(token, None) is not None:
                self._latencies_ms.append((time.monotonic() - sent_at) * 1000)
                self._handle(node, batches, resp)

        try:
            self.net.send(node, req, done, now)
        except KafkaError as e:
            done(e)

    def _handle(self, node: int, batches: list[ProducerBatch], resp: Any) -> None:
        now_ms = time.monotonic() * 1000.0
        if isinstance(resp, BaseException) and not isinstance(resp, KafkaError):
            raise resp
        results = None if resp is None or isinstance(resp, KafkaError) else produce_results(resp)
        done: list[tuple[ProducerBatch, KafkaError | None, int, int]] = []
        expired_in_flight = False
        with self.lock:
            for b in batches:
                if resp is None:
                    done.append((b, None, -1, -1))
                    self.acc.complete(b)
                    continue
                if isinstance(resp, KafkaError):
                    err: KafkaError | None = resp
                    row: dict[str, Any] = {}
                else:
                    assert results is not None
                    row = results.get(b.topic, {}).get(b.partition) or {
                        "error_code": ErrorCode.unknown_server_error,
                        "error_message": "the response left this partition out"}
                    code = row["error_code"]
                    err = None
                    if code and code != ErrorCode.duplicate_sequence_number:
                        err = KafkaError(code, row.get("error_message") or "")
                if err is None:
                    done.append((b, None, row.get("base_offset", -1), row.get("log_append_time_ms", -1)))
                    self.acc.complete(b)
                    continue
                if err.code in METADATA_ERRORS or isinstance(resp, KafkaError):
                    self.need_metadata = True
                if self._retriable(err) and self.acc.can_retry(b, now_ms, self.retries) and not self.closing:
                    b.last_error = err
                    self.acc.reenqueue(b, now_ms)
                    self.retries_done += 1
                    continue
                if self._retriable(err) and not self.closing and self.acc.past_delivery_timeout(b, now_ms):
                    # Retries stopped because the time is up, not because of this error: a timeout,
                    # whether the batch was queued or in flight when it ran out (as Kafka's clients).
                    err = self._expired(b, now_ms, err)
                    expired_in_flight = True
                done.append((b, err, -1, -1))
                self.acc.complete(b)
            self.memory_freed.notify_all()
        for b, err, base, lat in done:
            self._report(b, err, base, lat)
        if expired_in_flight and self.idempotent and self.transactional_id is None:
            self._new_producer_id("a batch expired")
        elif self.idempotent and self.transactional_id is None and any(
                err is not None and err.code in (ErrorCode.unknown_producer_id, ErrorCode.out_of_order_sequence_number)
                for _b, err, _base, _lat in done):
            self._new_producer_id("the broker lost track of this producer's sequence")

    def _expired(self, b: ProducerBatch, now_ms: float, last: KafkaError | None = None) -> KafkaError:
        """The error a batch gets when delivery.timeout.ms runs out before it is acknowledged."""
        return KafkaError(
            ErrorCode.request_timed_out,
            f"{b.record_count} record(s) for {b.topic}[{b.partition}] expired: "
            f"{now_ms - b.created_ms:.0f} ms since the batch was created exceeds "
            f"delivery.timeout.ms={self.cfg['delivery.timeout.ms']}"
            + ("" if last is None else f" (last error: {last.name})"))

    def _new_producer_id(self, why: str) -> None:
        """After a fatal sequence error, get a fresh producer id and restart every partition's
        sequence at 0 (what Kafka's idempotent producer does since KIP-360), instead of
        failing every later batch."""
        if self.producer_id < 0:
            return
        log.info("%s: %s; asking for a new producer id", self.ctx.node, why)
        self.producer_id, self.producer_epoch = -1, -1

    def _retriable(self, err: KafkaError) -> bool:
        # An idempotent producer's later batches are rejected out of sequence when an earlier
        # one failed; they go back in order behind it.
        return err.retriable or (self.idempotent and err.code == ErrorCode.out_of_order_sequence_number)

    def _report(self, batch: ProducerBatch, err: KafkaError | None, base_offset: int, log_append_ms: int) -> None:
        if err is None:
            self.records_sent += batch.record_count
            self.bytes_sent += len(batch.wire or b"")
            self.batches_sent += 1
        else:
            self.errors += 1
            if self.transactional_id is not None:
                # A record of the transaction is lost: it can only be aborted now (or, fenced,
                # the producer is done for).
                self.txn.fail(err, fatal=is_fatal_txn_error(err))
        self.reports.put(DeliveryReport(batch, err, base_offset, log_append_ms))

    def counters(self) -> dict[str, Any]:
        """What the producer lab plots: cumulative counts, plus batch shape and latency."""
        with self.lock:
            batch = self.acc.stats.as_dict()
        lat = sorted(self._latencies_ms)
        return {"records_sent": self.records_sent, "bytes_sent": self.bytes_sent,
                "batches_sent": self.batches_sent, "errors": self.errors, "retries": self.retries_done,
                "records_per_batch": batch["records_per_batch"], "bytes_per_batch": batch["bytes_per_batch"],
                "compression_ratio": batch["compression_ratio"], "linger_waited_ms": batch["linger_waited_ms"],
                "request_latency_ms_p50": lat[len(lat) // 2] if lat else None,
                "request_latency_ms_p99": lat[int(len(lat) * 0.99)] if lat else None}

    def on_stop(self) -> None:
        self._fail_all(KafkaError(ErrorCode.unknown_server_error,
                                  "the producer was closed before these records were sent"))

    def on_failure(self, error: BaseException) -> None:
        self._fail_all(KafkaError(ErrorCode.unknown_server_error, f"the sender thread failed: {error!r}"))

    def _fail_all(self, err: KafkaError) -> None:
        with self.lock:
            gone = self.acc.abort_all()
            for batches in self._in_flight.values():
                for b in batches:
                    self.acc.complete(b)
                    gone.append(b)
            self._in_flight.clear()
            self.memory_freed.notify_all()
        for b in gone:
            self._report(b, err, -1, -1)


_SENDING = (TxnState.IN_TRANSACTION, TxnState.COMMITTING_TRANSACTION, TxnState.ABORTING_TRANSACTION)


def is_fatal_txn_error(err: BaseException) -> bool:
    return isinstance(err, KafkaError) and err.code in FATAL_TXN_ERRORS


def _add_partitions_error(resp: Any) -> ErrorCode:
    for t in resp.results_by_topic_v3_and_below:
        for p in t.results_by_partition:
            if p.partition_error_code != ErrorCode.none:
                return p.partition_error_code
    return ErrorCode.none
