"""Producer: confluent-kafka's API over the lab cluster.

produce() only appends to the RecordAccumulator (a few microseconds); the Sender thread does
all network work. Delivery reports come back through poll()/flush(), which run the callbacks
in the caller's thread, as confluent-kafka does.

With a `transactional.id`: init_transactions(), begin_transaction(), produce()...,
send_offsets_to_transaction(), commit_transaction() / abort_transaction(), with
confluent-kafka's names. Their failures raise KafkaException whose args[0] is a TxnError
with confluent's flags: fatal() (fenced: close this producer), txn_requires_abort() (call
abort_transaction() and start again) and retriable() (call the same method again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kafkalab.client.accumulator import (
    APPENDED_WAKE,
    NEW_BATCH_NEEDED,
    NO_MEMORY,
    RecordAccumulator,
    estimate_record_size,
)
from kafkalab.client.config import producer_config
from kafkalab.client.context import ClientContext
from kafkalab.client.message import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Message
from kafkalab.client.metadata import ClusterMetadata
from kafkalab.client.partitioner import (
    BuiltInPartitioner,
    StickyPerBatchPartitioner,
    check_partition,
    make_partitioner,
    murmur2_partition,
)
from kafkalab.client.sender import (
    GROUP_KEY,
    TXN_KEY,
    DeliveryReport,
    ReportQueue,
    Sender,
    is_fatal_txn_error,
)
from kafkalab.client.transaction_state import IllegalTxnTransition, TxnState
from kafkalab.errors import KafkaLabError
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import ZMQ_VERSIONS, request_class, schema_module
from kafkalab.protocol.build import ms
from kafkalab.protocol.errors import ErrorCode, KafkaError

DeliveryCallback = Callable[[Any, Message], None]
_time_ns = time.time_ns
UNKNOWN_TOPIC_ANSWERS = 3  # "unknown topic" answers before produce() gives up on a topic


def unknown_topic_message(topic: str) -> str:
    """Why the lab producer refuses a topic that a Kafka client would have created."""
    return (f"topic {topic!r} is not in the cluster's metadata: create it first "
            f"(cluster.create_topic({topic!r}, partitions=...)). The lab producer never creates a topic, "
            "so a typo cannot quietly make a new 1-partition topic; Kafka clients on "
            "cluster.bootstrap_servers get Kafka's auto.create.topics.enable=true (num.partitions, "
            "default.replication.factor), off with Cluster(config={'auto.create.topics.enable': False})")


def _to_bytes(x: Any, what: str) -> bytes | None:
    if x is None or type(x) is bytes:
        return x
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    raise TypeError(f"{what} must be bytes or str (or None), got {type(x).__name__}: "
                    "serialize it first, e.g. json.dumps(obj).encode()")


def _headers(headers: Any) -> list[tuple[str, bytes | None]] | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for item in items:
        try:
            k, v = item
        except (TypeError, ValueError):
            raise TypeError(f"headers are a dict or a list of (str, bytes) pairs, got {item!r}") from None
        if not isinstance(k, str):
            raise TypeError(f"header key must be str, got {k!r}")
        out.append((k, _to_bytes(v, f"header {k!r} value")))
    return out




class TxnError:
    """confluent-kafka's KafkaError object for transactional calls: code(), name(), str()
    and the flags that say what the application should do next."""

    def __init__(self, error: KafkaError, *, fatal: bool = False, txn_requires_abort: bool = False,
                 retriable: bool = False):
        self.error = error
        self._fatal, self._abort, self._retriable = fatal, txn_requires_abort, retriable

    def code(self) -> int:
        return int(self.error.code)

    def name(self) -> str:
        return self.error.name

    def str(self) -> str:
        return str(self.error)

    def fatal(self) -> bool:
        return self._fatal

    def txn_requires_abort(self) -> bool:
        return self._abort

    def retriable(self) -> bool:
        return self._retriable

    def __repr__(self) -> str:
        flags = [f for f, on in (("fatal", self._fatal), ("txn_requires_abort", self._abort),
                                 ("retriable", self._retriable)) if on]
        return f"TxnError({self.error}{', ' if flags else ''}{', '.join(flags)})"


class KafkaException(KafkaLabError):
    """What the transactional methods raise (as confluent-kafka): args[0] is a TxnError."""

    def __init__(self, error: TxnError):
        super().__init__(error)
        self.error = error

    def __str__(self) -> str:
        return self.error.str()


def _group_fields(group_metadata: Any) -> tuple[str, int, str, str | None]:
    """(group_id, generation_id, member_id, group_instance_id) from consumer_group_metadata()
    (an object or dict with those names) or a plain group id."""
    if isinstance(group_metadata, str):
        return group_metadata, -1, "", None
    get = group_metadata.get if isinstance(group_metadata, Mapping) else (
        lambda k, d=None: getattr(group_metadata, k, d))
    gid = get("group_id")
    if not gid:
        raise TypeError("group_metadata must be consumer.consumer_group_metadata() or a group id string, "
                        f"got {group_metadata!r}")
    return (str(gid), int(get("generation_id", -1) if get("generation_id", -1) is not None else -1),
            str(get("member_id", "") or ""), get("group_instance_id", None))


class Producer:
    """Producer(config, ctx): build it with cluster.producer(config)."""

    def __init__(self, config: Mapping[str, Any] | None = None, ctx: ClientContext | None = None,
                 *, rng: Any = None):
        if ctx is None:
            raise TypeError("a kafkalab Producer needs the cluster's ClientContext: "
                            "create it with cluster.producer(config)")
        self._cfg = cfg = producer_config(config)
        self._ctx = ctx
        self._partitioner = make_partitioner(
            cfg["partitioner"], rng, batch_size=cfg["batch.size"],
            adaptive=cfg["partitioner.adaptive.partitioning.enable"],
            ignore_keys=cfg["partitioner.ignore.keys"])
        self._builtin = isinstance(self._partitioner, BuiltInPartitioner)
        self._batch_size = cfg["batch.size"]
        # produce()'s fast paths: no callback to keep per record, no transaction to check, and
        # no record they take can be over max.request.size: they append only to a batch that
        # has a record already and stays below batch.size, so a record's estimate (value +
        # RECORD_OVERHEAD) is below batch.size - 2 * RECORD_OVERHEAD
        self._fast = (self._builtin and cfg["on_delivery"] is None and cfg["transactional.id"] is None
                      and cfg["max.request.size"] >= cfg["batch.size"])
        self._fast_keyed = self._fast and not cfg["partitioner.ignore.keys"]
        # topic -> the built-in partitioner's sticky state, whose open lane (if any) takes the
        # topic's null-key records (read under self._lock)
        self._lanes = self._partitioner.sticky if self._fast else {}
        self._sticky = isinstance(self._partitioner, StickyPerBatchPartitioner)
        self._default_cb: DeliveryCallback | None = cfg["on_delivery"]
        self._max_block_s = cfg["max.block.ms"] / 1000.0
        self._max_request_size = cfg["max.request.size"]
        self._acc = RecordAccumulator(
            batch_size=cfg["batch.size"], linger_ms=cfg["linger.ms"],
            buffer_memory=cfg["buffer.memory"], delivery_timeout_ms=cfg["delivery.timeout.ms"],
            retry_backoff_ms=cfg["retry.backoff.ms"], max_request_size=cfg["max.request.size"],
            partition_availability_timeout_ms=cfg["partitioner.availability.timeout.ms"])
        self._lock = threading.Lock()
        self._memory_freed = threading.Condition(self._lock)
        self._metadata_changed = threading.Condition(threading.Lock())
        self._reports = ReportQueue()
        self._outstanding = 0
        self._flushers = 0
        self._closed = False
        self.closed_because: str | None = None  # set by a Cluster that closes its clients
        self._sender = Sender(ctx, cfg, self._acc, self._lock, self._memory_freed,
                              self._metadata_changed, self._reports)
        self._sender.on_topic_change = self._topics_changed
        self._topic_info = self._sender.topic_info
        self._sender.start()
        self._sender.started_ok.wait()
        self._sender.check()

    @property
    def node(self) -> str:
        """This client's name on the lab network (for cluster faults and metrics)."""
        return self._ctx.node

    @property
    def config(self) -> dict[str, Any]:
        """The resolved configuration (every key, with defaults)."""
        return dict(self._cfg)

    def _leader_for(self, topic: str, partition: int) -> int | None:
        net = self._sender.net
        return None if net is None else net.metadata.leader_for(topic, partition)

    # ---- produce ----------------------------------------------------------------------
    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int = -1,
                on_delivery: DeliveryCallback | None = None, callback: DeliveryCallback | None = None,
                timestamp: int = 0, headers: Any = None) -> None:
        """Queue one record. Raises BufferError if buffer.memory stays full for max.block.ms."""
        if key is None and headers is None and partition < 0 and on_delivery is None and callback is None:
            if type(value) is bytes:
                st = self._lanes.get(topic)
                if st is not None:
                    # The common case: the record joins the open batch of the topic's sticky
                    # partition, which the built-in partitioner let the fast path fill (its
                    # lane) while no switch can come due. Nothing is counted per record: the
                    # lane's growth is (close_lane, lane_records).
                    ts = timestamp or _time_ns() // 1_000_000
                    lock = self._lock
                    lock.acquire()  # not `with`: that costs twice as much per record
                    try:
                        lane = st.lane
                        if lane is not None and lane.append_value(value, ts):
                            return
                    finally:
                        lock.release()
        elif (type(key) is bytes and headers is None and partition < 0 and on_delivery is None and callback is None
                and self._fast_keyed and type(value) is bytes):
            if self._append_keyed(topic, key, value, timestamp):
                return
        if self._closed:
            why = f" ({self.closed_because})" if self.closed_because else ""
            raise KafkaLabError(f"produce() on a closed producer{why}: create a new one")
        if self._sender.transactional_id is not None:
            self._check_txn_produce()
        if type(value) is not bytes:
            value = _to_bytes(value, "value")
        if type(key) is not bytes:
            key = _to_bytes(key, "key")
        hdrs = _headers(headers) if headers else None
        ts = timestamp or int(time.time() * 1000)
        info = self._topic_info.get(topic)
        if info is None:
            info = self._wait_for_topic(topic)
        count, available = info
        if partition < 0:
            p = self._partitioner.partition(topic, key, count, available)
            if not (self._sticky or self._builtin):
                p = check_partition(p, topic, count, "the partitioner")
        else:
            p = check_partition(partition, topic, count, "produce()")
        size = estimate_record_size(key, value, hdrs)
        if size > self._max_request_size:
            raise KafkaError(ErrorCode.message_too_large,
                             f"a record of about {size} bytes is larger than max.request.size="
                             f"{self._max_request_size}: raise max.request.size or send less")
        cb = on_delivery or callback or self._default_cb
        thunk = (cb, key, value, hdrs, ts, time.monotonic()) if cb is not None else None
        sticky = self._sticky and key is None and partition < 0
        builtin = self._builtin and partition < 0 and self._partitioner.uses_sticky(key)
        deadline = None
        with self._lock:
            lane = self._lanes.get(topic)
            if lane is not None:  # the partitioner reads what the lane appended; this record may join its batch
                self._outstanding += lane.close_lane()
            if builtin:  # under the lock: another thread may have moved the sticky partition
                p = self._partitioner.sticky_partition(topic, count, available, self._acc, self._leader_for)
            while True:
                r = self._acc.try_append(topic, p, key, value, hdrs, ts, thunk,
                                         time.monotonic() * 1000.0, abort_on_new_batch=sticky)
                if r == NEW_BATCH_NEEDED:
                    # The sticky partition's batch is full: move on before opening a new one.
                    self._partitioner.on_new_batch(topic, count, available, p)
                    p = self._partitioner.partition(topic, key, count, available)
                    sticky = False
                    continue
                if r != NO_MEMORY:
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._max_block_s
                    self._sender.waker.wake()
                if now >= deadline or self._sender.failure is not None:
                    raise BufferError(
                        f"Local: Queue full (buffer.memory={self._cfg['buffer.memory']} bytes stayed "
                        f"in use for max.block.ms={self._cfg['max.block.ms']}): call poll() or "
                        "flush() to let deliveries complete, or raise buffer.memory")
                self._memory_freed.wait(deadline - now)
            if builtin:
                self._partitioner.appended(topic, p, self._acc.last_appended_bytes, count, available,
                                           self._acc, self._leader_for)
                if self._fast:
                    self._partitioner.open_lane(topic, p, self._acc.batches[(topic, p)][-1].builder)
            self._outstanding += 1
        if r == APPENDED_WAKE:
            self._sender.waker.wake()

    def _append_keyed(self, topic: str, key: bytes, value: bytes, timestamp: int) -> bool:
        """produce()'s common keyed case: murmur2(key) picks the partition (the built-in
        partitioner's rule for keys), the record joins that partition's open batch. False: take
        the general way (no metadata yet, no open batch, or the batch is full)."""
        info = self._topic_info.get(topic)
        if info is None:
            return False
        p = murmur2_partition(key, info[0])
        ts = timestamp or _time_ns() // 1_000_000
        with self._lock:
            dq = self._acc.batches.get((topic, p))
            if not dq or dq[-1].attempts:
                return False
            builder = dq[-1].builder
            if builder.fast_limit < self._batch_size:  # it may be a lane (open_lane lowers its limit)
                lane = self._lanes.get(topic)
                if lane is not None and lane.lane is builder:  # a keyed record is no sticky one
                    self._outstanding += lane.close_lane()
            if not builder.append(key, value, None, ts):
                return False
            self._outstanding += 1
            full = builder.size >= self._batch_size
        if full:
            self._sender.waker.wake()
        return True

    def _topics_changed(self, topics: list[str]) -> None:
        """From the sender: these topics' metadata changed (or they are gone). Their records
        take the general way again, which checks the topic and its partition count."""
        with self._lock:
            for t in topics:
                st = self._lanes.get(t)
                if st is not None:
                    self._outstanding += st.close_lane()

    def _wait_for_topic(self, topic: str) -> tuple[int, tuple[int, ...]]:
        self._sender.check()
        self._sender.want_topic(topic)
        deadline = time.monotonic() + self._max_block_s
        with self._metadata_changed:
            while True:
                info = self._topic_info.get(topic)
                if info is not None:
                    return info
                err = self._sender.topic_errors.get(topic)
                if err is not None and err[1] >= UNKNOWN_TOPIC_ANSWERS:
                    raise KafkaError(err[0].code, unknown_topic_message(topic))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise KafkaError(ErrorCode.request_timed_out,
                                     f"topic {topic!r} not present in metadata after max.block.ms="
                                     f"{self._cfg['max.block.ms']}: is the cluster up?")
                self._metadata_changed.wait(min(left, 0.1))
                self._sender.check()

    # ---- delivery reports -------------------------------------------------------------
    def poll(self, timeout: float | None = 0) -> int:
        """Serve queued delivery reports (waiting up to timeout s for one); returns how many
        callbacks ran. timeout None or < 0 waits until a report comes."""
        served = self._serve()
        if served or timeout == 0:
            return served
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while True:
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return 0
            self._reports.wait(left)
            served = self._serve()
            if served or self._had_reports:
                return served
            if self._sender.failure is not None:
                self._sender.check()

    def _serve(self) -> int:
        items = self._reports.items
        served = 0
        first_error: BaseException | None = None
        self._had_reports = False
        while items:
            try:
                rep = items.popleft()
            except IndexError:
                break
            self._had_reports = True
            try:
                served += self._deliver(rep)
            except Exception as e:  # a callback raised: finish the others, then re-raise
                first_error = first_error or e
            with self._lock:
                self._outstanding -= rep.batch.record_count
        if first_error is not None:
            raise first_error
        return served

    def _deliver(self, rep: DeliveryReport) -> int:
        b = rep.batch
        if not any(b.thunks):
            return 0
        now = time.monotonic()
        base = rep.base_offset
        ts_type = TIMESTAMP_LOG_APPEND_TIME if rep.log_append_time_ms >= 0 else TIMESTAMP_CREATE_TIME
        err = rep.error
        served = 0
        error: BaseException | None = None
        for i, thunk in enumerate(b.thunks):
            if thunk is None:
                continue
            cb, key, value, hdrs, ts, t0 = thunk
            msg = Message(b.topic, b.partition, base + i if base >= 0 else -1, key, value, hdrs,
                          rep.log_append_time_ms if rep.log_append_time_ms >= 0 else ts, ts_type,
                          err, now - t0)
            try:
                cb(err, msg)
            except Exception as e:
                error = error or e
            served += 1
        if error is not None:
            raise error
        return served

    def flush(self, timeout: float | None = None) -> int:
        """Send everything now (linger.ms waived) and serve reports until none is left or
        timeout s pass; returns how many records are still queued."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        with self._lock:
            self._flushers += 1
            self._acc.flushing = True
        self._sender.waker.wake()
        try:
            while True:
                self._serve()
                if len(self) == 0:
                    return 0
                if self._sender.failure is not None or not self._sender.is_alive():
                    self._serve()
                    return len(self)
                left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if left <= 0:
                    return len(self)
                self._reports.wait(left)
        finally:
            with self._lock:
                self._flushers -= 1
                self._acc.flushing = self._flushers > 0

    def __len__(self) -> int:
        """Records produced whose delivery report has not been served yet."""
        with self._lock:
            return self._outstanding + sum(st.lane_records() for st in self._lanes.values())

    # ---- transactions --------------------------------------------------------------------
    def _txn_timeout(self, timeout: float | None) -> float:
        return self._max_block_s if timeout is None or timeout < 0 else timeout

    def _raise(self, err: BaseException, *, abortable: bool = False, retriable: bool | None = None) -> None:
        if isinstance(err, KafkaException):
            raise err
        kerr = err if isinstance(err, KafkaError) else KafkaError(ErrorCode.unknown_server_error, str(err))
        fatal = is_fatal_txn_error(kerr)
        retriable = kerr.retriable if retriable is None else retriable
        if fatal or (abortable and not retriable):
            self._sender.txn.fail(kerr, fatal=fatal)  # Kafka's transitionToFatalError / AbortableError
        raise KafkaException(TxnError(kerr, fatal=fatal, txn_requires_abort=abortable and not fatal,
                                      retriable=retriable)) from None

    def _require(self, *states: TxnState, what: str) -> None:
        if self._sender.transactional_id is None:
            raise KafkaException(TxnError(KafkaError(ErrorCode.invalid_txn_state,
                                 f"{what} needs a transactional producer: set transactional.id")))
        txn = self._sender.txn
        state = txn.state
        if state is TxnState.FATAL_ERROR:
            assert txn.error is not None
            raise KafkaException(TxnError(txn.error, fatal=True))
        if state not in states:
            raise KafkaException(TxnError(KafkaError(ErrorCode.invalid_txn_state,
                                 f"{what} is not allowed in state {state.name}"),
                                 txn_requires_abort=state is TxnState.ABORTABLE_ERROR))

    def _transition(self, target: TxnState, what: str) -> None:
        """Move the transaction to target. The sender thread may have moved it meanwhile (an
        error ended the transaction), which can make the move illegal: a clear error then."""
        try:
            self._sender.txn.transition(target)
        except IllegalTxnTransition as e:
            txn = self._sender.txn
            if e.source is TxnState.FATAL_ERROR and txn.error is not None:
                raise KafkaException(TxnError(txn.error, fatal=True)) from None
            raise KafkaException(TxnError(
                KafkaError(ErrorCode.invalid_txn_state, f"{what}: {e}"),
                txn_requires_abort=e.source is TxnState.ABORTABLE_ERROR)) from None

    def _check_txn_produce(self) -> None:
        txn = self._sender.txn
        if txn.state is TxnState.ABORTABLE_ERROR:
            self._require(TxnState.IN_TRANSACTION, what="produce()")
        self._require(TxnState.IN_TRANSACTION, what="produce() outside begin_transaction()")

    def _coordinator(self, key_type: int, key: str, make: Any, error_of: Any, deadline: float) -> Any:
        fut = self._sender.coordinator_call(key_type, key, make, error_of, max(0.0, deadline - time.monotonic()))
        try:
            return fut.result(max(0.0, deadline - time.monotonic()) + 1.0)
        except TimeoutError:
            raise KafkaError(ErrorCode.request_timed_out, f"the coordinator of {key!r} did not answer in time") from None

    def init_transactions(self, timeout: float | None = None) -> None:
        """Register the transactional.id with its coordinator: get the producer id and a new
        epoch (fencing any older instance), after the coordinator has aborted whatever that
        instance left open."""
        # INITIALIZING: a call that timed out may be made again (as Kafka's initTransactions)
        self._require(TxnState.UNINITIALIZED, TxnState.INITIALIZING, what="init_transactions()")
        s = self._sender
        if s.txn.state is TxnState.UNINITIALIZED:
            self._transition(TxnState.INITIALIZING, "init_transactions()")
        tid = str(s.transactional_id)
        deadline = time.monotonic() + self._txn_timeout(timeout)
        cls = request_class(ApiKey.INIT_PRODUCER_ID, ZMQ_VERSIONS[ApiKey.INIT_PRODUCER_ID])

        def make() -> Any:
            return cls(transactional_id=tid, transaction_timeout=ms(self._cfg["transaction.timeout.ms"]),
                       producer_id=-1, producer_epoch=-1)

        try:
            resp = self._coordinator(TXN_KEY, tid, make, lambda r: r.error_code, deadline)
        except BaseException as e:
            self._raise(e)
        with self._lock:
            s.producer_id, s.producer_epoch = int(resp.producer_id), int(resp.producer_epoch)
            self._acc.reset_sequences()
        self._transition(TxnState.READY, "init_transactions()")

    def begin_transaction(self) -> None:
        self._require(TxnState.READY, what="begin_transaction()")
        self._transition(TxnState.IN_TRANSACTION, "begin_transaction()")

    def send_offsets_to_transaction(self, positions: Any, group_metadata: Any, timeout: float | None = None) -> None:
        """Commit the consumer's positions (the next offsets to read) as part of this
        transaction: AddOffsetsToTxn to the transaction coordinator, then TxnOffsetCommit to
        the group coordinator; they become the group's committed offsets only if the
        transaction commits."""
        self._require(TxnState.IN_TRANSACTION, what="send_offsets_to_transaction()")
        s = self._sender
        tid = str(s.transactional_id)
        group, generation, member, instance = _group_fields(group_metadata)
        deadline = time.monotonic() + self._txn_timeout(timeout)
        add_cls = request_class(ApiKey.ADD_OFFSETS_TO_TXN, ZMQ_VERSIONS[ApiKey.ADD_OFFSETS_TO_TXN])
        try:
            self._coordinator(TXN_KEY, tid, lambda: add_cls(
                transactional_id=tid, producer_id=s.producer_id, producer_epoch=s.producer_epoch, group_id=group),
                lambda r: r.error_code, deadline)
        except BaseException as e:
            self._raise(e, abortable=True)
        s.txn.offsets_added = True
        cls = request_class(ApiKey.TXN_OFFSET_COMMIT, ZMQ_VERSIONS[ApiKey.TXN_OFFSET_COMMIT])
        mod = schema_module(cls)
        by_topic: dict[str, list[Any]] = {}
        for tp in positions:
            if tp.offset < 0:
                continue  # nothing consumed from it: no position to commit
            by_topic.setdefault(tp.topic, []).append(mod.TxnOffsetCommitRequestPartition(
                partition_index=tp.partition, committed_offset=tp.offset,
                committed_leader_epoch=getattr(tp, "leader_epoch", None) or -1, committed_metadata=None))
        if not by_topic:
            return
        req = cls(transactional_id=tid, group_id=group, producer_id=s.producer_id, producer_epoch=s.producer_epoch,
                  generation_id=generation, member_id=member, group_instance_id=instance,
                  topics=tuple(mod.TxnOffsetCommitRequestTopic(name=t, partitions=tuple(ps))
                               for t, ps in by_topic.items()))
        try:
            self._coordinator(GROUP_KEY, group, lambda: req, _txn_offset_commit_error, deadline)
        except BaseException as e:
            self._raise(e, abortable=True)

    def commit_transaction(self, timeout: float | None = None) -> None:
        """Flush the transaction's records, then EndTxn(commit): the coordinator logs
        PrepareCommit, answers, and writes COMMIT markers to every partition in it."""
        self._end(True, timeout)

    def abort_transaction(self, timeout: float | None = None) -> None:
        """Drop the records not sent yet, wait for those in flight, then EndTxn(abort):
        read_committed consumers never see this transaction's records."""
        self._end(False, timeout)

    def _end(self, commit: bool, timeout: float | None) -> None:
        what = "commit_transaction()" if commit else "abort_transaction()"
        s = self._sender
        txn = s.txn
        # Calling again after a timeout keeps the state: COMMITTING (or ABORTING) is re-entered.
        # As Kafka, a commit that timed out must be retried, not aborted.
        if commit:
            self._require(TxnState.IN_TRANSACTION, TxnState.COMMITTING_TRANSACTION, TxnState.ABORTABLE_ERROR,
                          what=what)
        else:
            self._require(TxnState.IN_TRANSACTION, TxnState.ABORTING_TRANSACTION, TxnState.ABORTABLE_ERROR,
                          what=what)
        t = self._txn_timeout(timeout)
        deadline = time.monotonic() + t
        if commit and txn.error is not None:
            self._raise(txn.error, abortable=True, retriable=False)
        if not commit:
            if txn.state is not TxnState.ABORTING_TRANSACTION:
                self._transition(TxnState.ABORTING_TRANSACTION, what)
            with self._lock:
                gone = self._acc.abort_undrained()
                self._memory_freed.notify_all()
            err = KafkaError(ErrorCode.invalid_txn_state, "the transaction was aborted before this record was sent")
            for b in gone:
                self._reports.put(DeliveryReport(b, err, -1, -1))
        elif txn.state is not TxnState.COMMITTING_TRANSACTION:
            self._transition(TxnState.COMMITTING_TRANSACTION, what)
        left = self.flush(t)
        if left:
            self._raise(KafkaError(ErrorCode.request_timed_out,
                                   f"{left} record(s) not delivered within {t:.1f}s: call {what} again"),
                        retriable=True)
        if commit and txn.error is not None:  # a batch failed: the sender moved to ABORTABLE_ERROR
            self._raise(txn.error, abortable=True, retriable=False)
        if txn.added or txn.offsets_added:
            tid = str(s.transactional_id)
            cls = request_class(ApiKey.END_TXN, ZMQ_VERSIONS[ApiKey.END_TXN])
            try:
                self._coordinator(TXN_KEY, tid, lambda: cls(
                    transactional_id=tid, producer_id=s.producer_id, producer_epoch=s.producer_epoch,
                    committed=commit), lambda r: r.error_code, deadline)
            except BaseException as e:
                self._raise(e, abortable=commit)
        self._transition(TxnState.READY, what)

    # ---- metadata ----------------------------------------------------------------------
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        """Cluster metadata (brokers, topics, partitions with leader, replicas, isrs)."""
        self._sender.check()
        fut = self._sender.list_metadata(None if topic is None else [topic])
        fut.result(None if timeout is None or timeout < 0 else timeout)
        assert self._sender.net is not None
        return self._sender.net.metadata.snapshot(None if topic is None else [topic])

    @property
    def accumulator_stats(self) -> dict[str, float]:
        """Batches sent so far: count, records and bytes per batch, compression ratio, and
        how long batches lingered on average (ms)."""
        with self._lock:
            return self._acc.stats.as_dict()

    # ---- lifecycle -----------------------------------------------------------------------
    def close(self, timeout: float | None = None) -> int:
        """Flush (up to timeout s), stop the sender thread; returns records left undelivered
        (their reports say why)."""
        if self._closed:
            return 0
        with self._lock:  # from now on produce() goes the general way, which refuses
            self._fast = self._fast_keyed = False
            self._lanes = {}
            if self._builtin:
                self._outstanding += self._partitioner.close_lanes()
        left = self.flush(timeout)
        self._closed = True
        self._sender.closing = True
        self._sender.stop()
        self._sender.join(timeout=5)
        self._serve()
        return left

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Producer {self._ctx.node} queued={len(self)}>"




def _txn_offset_commit_error(resp: Any) -> ErrorCode:
    for t in resp.topics:
        for p in t.partitions:
            if p.error_code != ErrorCode.none:
                return p.error_code
    return ErrorCode.none
