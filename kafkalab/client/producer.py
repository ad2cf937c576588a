"""Producer: confluent-kafka's API over the lab cluster.

produce() only appends to the RecordAccumulator (a few microseconds); the Sender thread does
all network work. Delivery reports come back through poll()/flush(), which run the callbacks
in the caller's thread, as confluent-kafka does.
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
from kafkalab.client.partitioner import DefaultPartitioner, check_partition, make_partitioner
from kafkalab.client.sender import DeliveryReport, ReportQueue, Sender
from kafkalab.errors import KafkaLabError
from kafkalab.protocol.errors import ErrorCode, KafkaError

DeliveryCallback = Callable[[Any, Message], None]
UNKNOWN_TOPIC_ANSWERS = 3  # "unknown topic" answers before produce() gives up on a topic


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


class Producer:
    """Producer(config, ctx): build it with cluster.producer(config)."""

    def __init__(self, config: Mapping[str, Any] | None = None, ctx: ClientContext | None = None,
                 *, rng: Any = None):
        if ctx is None:
            raise TypeError("a kafkalab Producer needs the cluster's ClientContext: "
                            "create it with cluster.producer(config)")
        self._cfg = cfg = producer_config(config)
        self._ctx = ctx
        self._partitioner = make_partitioner(cfg["partitioner"], rng)
        self._sticky = isinstance(self._partitioner, DefaultPartitioner)
        self._default_cb: DeliveryCallback | None = cfg["on_delivery"]
        self._max_block_s = cfg["max.block.ms"] / 1000.0
        self._max_request_size = cfg["max.request.size"]
        self._acc = RecordAccumulator(
            batch_size=cfg["batch.size"], linger_ms=cfg["linger.ms"],
            buffer_memory=cfg["buffer.memory"], delivery_timeout_ms=cfg["delivery.timeout.ms"],
            retry_backoff_ms=cfg["retry.backoff.ms"], max_request_size=cfg["max.request.size"])
        self._lock = threading.Lock()
        self._memory_freed = threading.Condition(self._lock)
        self._metadata_changed = threading.Condition(threading.Lock())
        self._reports = ReportQueue()
        self._outstanding = 0
        self._flushers = 0
        self._closed = False
        self._sender = Sender(ctx, cfg, self._acc, self._lock, self._memory_freed,
                              self._metadata_changed, self._reports)
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

    # ---- produce ----------------------------------------------------------------------
    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int = -1,
                on_delivery: DeliveryCallback | None = None, callback: DeliveryCallback | None = None,
                timestamp: int = 0, headers: Any = None) -> None:
        """Queue one record. Raises BufferError if buffer.memory stays full for max.block.ms."""
        if self._closed:
            raise KafkaLabError("produce() on a closed producer: create a new one")
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
            if not self._sticky:
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
        deadline = None
        with self._lock:
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
            self._outstanding += 1
        if r == APPENDED_WAKE:
            self._sender.waker.wake()

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
                    raise KafkaError(err[0].code, f"topic {topic!r} is not in the cluster's metadata: "
                                     f"create it first (cluster.create_topic({topic!r}, partitions=...))")
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
        return self._outstanding

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


