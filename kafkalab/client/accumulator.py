"""RecordAccumulator: records waiting to be sent, batched per partition. Pure: time passed in.

produce() appends into the last open batch of the record's partition (a BatchBuilder, so sizes
are exact); only a queue's last batch takes records, and a batch is sealed (no more
`append_value`) when another opens behind it or it leaves its queue. The sender asks
`ready(now)` which brokers have a batch worth sending (full, or lingered linger.ms, or
flushing), `drain`s one batch per partition for each, and reports back:
`complete` (done, its buffer.memory is freed) or `reenqueue` (retry after retry.backoff.ms, in
its original place so a partition's records keep their order). `expire` fails batches that
have waited delivery.timeout.ms.

Memory is accounted per batch as Kafka's BufferPool does: each new batch reserves
max(batch.size, its first record) bytes of buffer.memory until it completes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafkalab.records.builder import BatchBuilder
from kafkalab.records.header import HEADER_SIZE

TopicPartitionKey = tuple[str, int]

# try_append results
APPENDED = 0
APPENDED_WAKE = 1  # a new batch started, or the batch is now full: the sender should look
NEW_BATCH_NEEDED = 2  # abort_on_new_batch: let the sticky partitioner move first
NO_MEMORY = 3  # buffer.memory is used up: wait for batches to complete (max.block.ms)

# A record's bytes beyond key + value + headers: varints and attributes, at most.
RECORD_OVERHEAD = 21


def estimate_record_size(key: bytes | None, value: bytes | None, headers: Iterable[Any] | None) -> int:
    """Upper bound of one record's encoded size (used for max.request.size checks)."""
    n = RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)
    if headers:
        for hk, hv in headers:
            n += 10 + len(hk) * 4 + (len(hv) if hv else 0)
    return n


@dataclass(eq=False, slots=True)
class ProducerBatch:
    topic: str
    partition: int
    builder: BatchBuilder
    created_ms: float
    order: int  # creation order: retries go back in this order
    reserved: int  # bytes of buffer.memory held
    thunks: list[Any] = field(default_factory=list)  # per record: whatever the producer needs to report
    attempts: int = 0
    retry_at_ms: float = 0.0
    drained_ms: float | None = None
    base_sequence: int = -1
    wire: bytes | None = None  # built once, so a retry resends the same bytes and sequence
    last_error: Any = None  # the broker's last retriable error: named if the batch then expires

    @property
    def record_count(self) -> int:
        return self.builder.record_count

    @property
    def size(self) -> int:
        return self.builder.estimated_size

    @property
    def tp(self) -> TopicPartitionKey:
        return (self.topic, self.partition)


@dataclass
class ReadyCheck:
    ready_nodes: set[int]
    next_ready_in_ms: float  # when to look again (inf: nothing waiting)
    unknown_leader_topics: set[str]


@dataclass
class AccumulatorStats:
    batches: int = 0
    records: int = 0
    bytes: int = 0  # uncompressed batch bytes
    wire_bytes: int = 0  # as sent (compressed)
    linger_waited_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        n = self.batches or 1
        return {
            "batches": self.batches,
            "records": self.records,
            "records_per_batch": self.records / n,
            "bytes_per_batch": self.bytes / n,
            "compression_ratio": (self.wire_bytes / self.bytes) if self.bytes else 1.0,
            "linger_waited_ms": self.linger_waited_ms / n,
        }


class RecordAccumulator:
    def __init__(
        self,
        *,
        batch_size: int = 16384,
        linger_ms: float = 5,
        buffer_memory: int = 33_554_432,
        delivery_timeout_ms: float = 120_000,
        retry_backoff_ms: float = 100,
        max_request_size: int = 1_048_576,
        partition_availability_timeout_ms: float = 0,
    ):
        self.batch_size = batch_size
        self.linger_ms = linger_ms
        self.buffer_memory = buffer_memory
        self.delivery_timeout_ms = delivery_timeout_ms
        self.retry_backoff_ms = retry_backoff_ms
        self.max_request_size = max_request_size
        self.partition_availability_timeout_ms = partition_availability_timeout_ms
        # node -> [last time it had data ready, last time it could also take it] (Kafka's
        # NodeLatencyStats): a node ready but not drainable for longer than
        # partitioner.availability.timeout.ms has its partitions left out of the load stats.
        self.node_latency: dict[int, list[float]] = {}
        self.available_memory = buffer_memory
        self.last_appended_bytes = 0  # what the last try_append added (the built-in partitioner counts it)
        self.batches: dict[TopicPartitionKey, deque[ProducerBatch]] = {}
        self.in_flight: dict[TopicPartitionKey, int] = {}
        self.next_sequence: dict[TopicPartitionKey, int] = {}
        self.flushing = False
        self.stats = AccumulatorStats()
        self._order = 0
        self._drain_start = 0

    # ---- produce() side -------------------------------------------------------------
    def try_append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
                   headers: Any, timestamp_ms: int, thunk: Any, now_ms: float,
                   abort_on_new_batch: bool = False) -> int:
        tp = (topic, partition)
        dq = self.batches.get(tp)
        if dq is None:
            dq = self.batches[tp] = deque()
        elif dq:
            last = dq[-1]
            before = last.builder.estimated_size
            if last.attempts == 0 and last.builder.append(key, value, headers, timestamp_ms):
                if thunk is not None:
                    last.thunks.append(thunk)
                self.last_appended_bytes = last.builder.estimated_size - before
                return APPENDED_WAKE if last.builder.estimated_size >= self.batch_size else APPENDED
        if abort_on_new_batch:
            return NEW_BATCH_NEEDED
        need = max(self.batch_size, HEADER_SIZE + estimate_record_size(key, value, headers))
        if need > self.available_memory:
            return NO_MEMORY
        if dq:
            dq[-1].builder.seal()  # only a queue's last batch takes records
        builder = BatchBuilder(self.batch_size)
        builder.append(key, value, headers, timestamp_ms)
        self.available_memory -= need
        self._order += 1
        batch = ProducerBatch(topic, partition, builder, now_ms, self._order, need)
        if thunk is not None:
            batch.thunks.append(thunk)
        dq.append(batch)
        self.last_appended_bytes = builder.estimated_size  # a new batch counts with its header
        return APPENDED_WAKE

    def all_batches_full(self, tp: TopicPartitionKey) -> bool:
        """Only the last batch can still take records: is it full (or is there none)?"""
        dq = self.batches.get(tp)
        return not dq or dq[-1].attempts > 0 or dq[-1].builder.estimated_size >= self.batch_size

    def queue_sizes(self, topic: str, leader_for: Callable[[str, int], int | None]
                    ) -> tuple[dict[int, int], int]:
        """For the built-in partitioner's load stats (Kafka's RecordAccumulator.partitionReady):
        batches queued per partition with a leader, leaving out partitions whose leader has
        been unable to take data for partitioner.availability.timeout.ms, and how many of the
        topic's partitions have a queue at all."""
        sizes: dict[int, int] = {}
        with_queues = 0
        for (t, p), dq in self.batches.items():
            if t != topic:
                continue
            with_queues += 1
            leader = leader_for(t, p)
            if leader is None or leader < 0:
                continue
            if self.partition_availability_timeout_ms > 0:
                ready_ms, drain_ms = self.node_latency.get(leader, (0.0, 0.0))
                if ready_ms - drain_ms > self.partition_availability_timeout_ms:
                    continue
            sizes[p] = len(dq)
        return sizes, with_queues

    def update_node_latency(self, node: int, now_ms: float, can_drain: bool) -> None:
        if self.partition_availability_timeout_ms <= 0:
            return
        stats = self.node_latency.setdefault(node, [now_ms, now_ms])
        if can_drain:
            stats[1] = now_ms
        stats[0] = now_ms

    # ---- sender side ----------------------------------------------------------------
    def _sendable_head(self, tp: TopicPartitionKey, dq: deque[ProducerBatch], now_ms: float) -> bool:
        head = dq[0]
        if head.attempts:
            # A retry waits for its backoff and for every later batch of the partition still
            # in flight to come back, so the partition's batches go out again in order.
            return now_ms >= head.retry_at_ms and not self.in_flight.get(tp)
        return True

    def ready(self, now_ms: float, leader_for: Callable[[str, int], int | None],
              sendable: Callable[[TopicPartitionKey], bool] | None = None) -> ReadyCheck:
        """sendable(tp) False holds a partition back (a transaction has not added it yet)."""
        nodes: set[int] = set()
        unknown: set[str] = set()
        next_in = float("inf")
        for tp, dq in self.batches.items():
            if not dq or (sendable is not None and not sendable(tp)):
                continue
            leader = leader_for(*tp)
            if leader is None or leader < 0:
                unknown.add(tp[0])
                continue
            head = dq[0]
            if head.attempts:
                if self.in_flight.get(tp):
                    continue  # looked at again when the in-flight batches come back
                wait = head.retry_at_ms - now_ms
                if wait <= 0:
                    nodes.add(leader)
                else:
                    next_in = min(next_in, wait)
                continue
            full = len(dq) > 1 or head.size >= self.batch_size
            wait = head.created_ms + self.linger_ms - now_ms
            if full or wait <= 0 or self.flushing:
                nodes.add(leader)
            else:
                next_in = min(next_in, wait)
        return ReadyCheck(nodes, max(next_in, 0.0), unknown)

    def drain(self, nodes: Iterable[int], leader_for: Callable[[str, int], int | None], now_ms: float,
              producer_id: int = -1, sendable: Callable[[TopicPartitionKey], bool] | None = None,
              ) -> dict[int, list[ProducerBatch]]:
        """Take at most one batch per partition for each node, up to max.request.size each.

        With a producer id (idempotence), a batch gets its partition's next sequence number
        the first time it is drained and keeps it through retries.
        """
        wanted = set(nodes)
        out: dict[int, list[ProducerBatch]] = {n: [] for n in wanted}
        sizes = dict.fromkeys(wanted, 0)
        tps = list(self.batches)
        if not tps:
            return {}
        # Start where the last drain stopped, so no partition always goes last.
        start = self._drain_start % len(tps)
        self._drain_start += 1
        for tp in tps[start:] + tps[:start]:
            dq = self.batches[tp]
            if not dq or (sendable is not None and not sendable(tp)):
                continue
            node = leader_for(*tp)
            if node not in wanted or not self._sendable_head(tp, dq, now_ms):
                continue
            head = dq[0]
            if out[node] and sizes[node] + head.size > self.max_request_size:
                continue
            dq.popleft()
            head.builder.seal()
            sizes[node] += head.size
            out[node].append(head)
            self.in_flight[tp] = self.in_flight.get(tp, 0) + 1
            head.drained_ms = now_ms
            if producer_id >= 0 and head.base_sequence < 0:
                seq = self.next_sequence.get(tp, 0)
                head.base_sequence = seq
                self.next_sequence[tp] = (seq + head.record_count) & 0x7FFFFFFF
            if head.attempts == 0:
                st = self.stats
                st.batches += 1
                st.records += head.record_count
                st.bytes += head.size
                st.linger_waited_ms += now_ms - head.created_ms
        return {n: b for n, b in out.items() if b}

    def record_wire_size(self, batch: ProducerBatch, wire_bytes: int) -> None:
        if batch.attempts == 0:
            self.stats.wire_bytes += wire_bytes

    def complete(self, batch: ProducerBatch) -> None:
        """The batch is done (acknowledged or failed for good): free its memory."""
        tp = batch.tp
        if batch.drained_ms is not None:
            self.in_flight[tp] = max(0, self.in_flight.get(tp, 0) - 1)
        self.available_memory += batch.reserved
        batch.reserved = 0

    def reenqueue(self, batch: ProducerBatch, now_ms: float) -> None:
        """Put an in-flight batch back for a retry after retry.backoff.ms, in creation order."""
        tp = batch.tp
        self.in_flight[tp] = max(0, self.in_flight.get(tp, 0) - 1)
        batch.attempts += 1
        batch.retry_at_ms = now_ms + self.retry_backoff_ms
        batch.drained_ms = None
        dq = self.batches.setdefault(tp, deque())
        i = 0
        while i < len(dq) and dq[i].order < batch.order:
            i += 1
        dq.insert(i, batch)

    def can_retry(self, batch: ProducerBatch, now_ms: float, retries: int) -> bool:
        return batch.attempts < retries and not self.past_delivery_timeout(batch, now_ms)

    def past_delivery_timeout(self, batch: ProducerBatch, now_ms: float) -> bool:
        return now_ms - batch.created_ms >= self.delivery_timeout_ms

    def expire(self, now_ms: float) -> list[ProducerBatch]:
        """Remove and return queued batches older than delivery.timeout.ms (memory freed)."""
        gone: list[ProducerBatch] = []
        limit = now_ms - self.delivery_timeout_ms
        for dq in self.batches.values():
            if dq and dq[0].created_ms <= limit:
                keep = [b for b in dq if b.created_ms > limit]
                gone.extend(b for b in dq if b.created_ms <= limit)
                dq.clear()
                dq.extend(keep)
        for b in gone:
            b.builder.seal()
            self.available_memory += b.reserved
            b.reserved = 0
        return gone

    def abort_all(self) -> list[ProducerBatch]:
        """Remove every queued batch (close without flushing); memory freed."""
        gone = [b for dq in self.batches.values() for b in dq]
        for dq in self.batches.values():
            dq.clear()
        for b in gone:
            b.builder.seal()
            self.available_memory += b.reserved
            b.reserved = 0
        return gone

    def abort_undrained(self, keep: Callable[[ProducerBatch], bool] | None = None) -> list[ProducerBatch]:
        """Remove queued batches never sent (no sequence number yet), e.g. when a transaction
        aborts; retries stay, so no partition's sequence gets a gap. Memory freed."""
        gone: list[ProducerBatch] = []
        for dq in self.batches.values():
            out = [b for b in dq if b.base_sequence < 0 and b.attempts == 0 and not (keep and keep(b))]
            if out:
                kept = [b for b in dq if b not in out]
                dq.clear()
                dq.extend(kept)
                gone.extend(out)
        for b in gone:
            b.builder.seal()
            self.available_memory += b.reserved
            b.reserved = 0
        return gone

    def partitions_with_batches(self) -> set[TopicPartitionKey]:
        return {tp for tp, dq in self.batches.items() if dq}

    def reset_sequences(self) -> None:
        """A new producer id or epoch restarts every partition's sequence at 0."""
        self.next_sequence.clear()
        for dq in self.batches.values():
            for b in dq:
                b.base_sequence = -1
                b.wire = None

    def has_unsent(self) -> bool:
        return any(self.batches.values())

    def queued_batches(self) -> int:
        return sum(len(dq) for dq in self.batches.values())
