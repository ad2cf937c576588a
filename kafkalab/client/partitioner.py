"""Partitioners: which partition a record goes to. Pure: no metadata fetching, no clocks.

Each takes the topic, the serialized key, the partition count and the partitions that have a
leader right now, and returns a partition index. The default matches Kafka's Java client since
3.3 (KIP-794, BuiltInPartitioner): keyed records go to murmur2(key) mod partitions (so a key
always lands on the same partition); null-key records stick to one partition until batch.size
bytes went to it, then move to the next one, chosen at random but weighted towards partitions
with shorter queues (adaptive partitioning). The rule before 3.3 (KIP-480: move on when a new
batch has to be opened, uniformly) is kept as `StickyPerBatchPartitioner` for comparison.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafkalab.errors import ConfigError

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 as Kafka's Java client computes it (Utils.murmur2), as an unsigned 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    left = length & 3
    if left == 3:
        h ^= data[tail + 2] << 16
    if left >= 2:
        h ^= data[tail + 1] << 8
    if left >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h


# Recent keys' hashes: murmur2 in Python costs microseconds, and producers repeat keys.
# Bounded: emptied when full; long keys are not kept.
_HASHES: dict[bytes, int] = {}
_HASHES_MAX = 1 << 16
_HASHED_KEY_MAX = 256


def murmur2_partition(key: bytes, partition_count: int) -> int:
    """Kafka's keyed partition: the hash made non-negative (mask, not abs) mod the count."""
    if type(key) is not bytes:
        key = bytes(key)
    h = _HASHES.get(key)
    if h is None:
        h = murmur2(key) & 0x7FFFFFFF
        if len(key) <= _HASHED_KEY_MAX:
            if len(_HASHES) >= _HASHES_MAX:
                _HASHES.clear()
            _HASHES[key] = h
    return h % partition_count


class Partitioner(Protocol):
    def partition(self, topic: str, key: bytes | None, partition_count: int,
                  available: Sequence[int]) -> int: ...

    def on_new_batch(self, topic: str, partition_count: int, available: Sequence[int],
                     previous: int) -> None: ...


@dataclass(slots=True)
class _Sticky:
    partition: int
    produced_bytes: int = 0
    # The open batch (a BatchBuilder) the producer's fast path appends this topic's null-key
    # records to with no bookkeeping per record (see BuiltInPartitioner.open_lane); what they
    # were is the builder's growth past lane_size and lane_count, counted by close_lane.
    lane: Any = None
    lane_size: int = 0
    lane_count: int = 0

    def close_lane(self) -> int:
        """End the lane, adding its records' bytes to produced_bytes; returns how many records
        the fast path appended through it."""
        lane = self.lane
        if lane is None:
            return 0
        self.lane = None
        self.produced_bytes += lane.size - self.lane_size
        return lane.record_count - self.lane_count

    def lane_records(self) -> int:
        """Records the fast path appended through the lane so far."""
        lane = self.lane
        return 0 if lane is None else lane.record_count - self.lane_count


def load_stats(queue_sizes: dict[int, int], partitions_with_queues: int, partition_count: int
               ) -> tuple[list[int], list[int]] | None:
    """Kafka's partition load stats: (partition ids, cumulative frequency table), or None to
    pick uniformly. queue_sizes holds the batches queued per available partition (a leader
    known, not excluded by partitioner.availability.timeout.ms); a shorter queue weighs more:
    each weight is (longest queue + 1) - queue."""
    if partitions_with_queues < partition_count:
        return None  # not every partition has had a batch yet: its queue is unknown
    if not queue_sizes or partitions_with_queues < 2:
        return None
    ids, sizes = list(queue_sizes), list(queue_sizes.values())
    if len(set(sizes)) == 1 and len(ids) == partitions_with_queues:
        return None  # all equal, none excluded: uniform is the same thing
    top = max(sizes) + 1
    cft, total = [], 0
    for q in sizes:
        total += top - q
        cft.append(total)
    return ids, cft


class BuiltInPartitioner:
    """Kafka's built-in partitioner (3.3+, KIP-794).

    Keyed records: murmur2 (unless partitioner.ignore.keys). Others stick to one partition
    until batch.size bytes were appended to it, and switch only once its batches are full
    (so no half-empty batch is left behind), or at 2 x batch.size whatever. The next partition
    is drawn with the queue-size weights of `load_stats` (adaptive partitioning), or uniformly
    among partitions with a leader when adaptive partitioning is off.
    """

    def __init__(self, rng: random.Random | None = None, *, batch_size: int = 16384,
                 adaptive: bool = True, ignore_keys: bool = False):
        self._rng = rng or random.Random()
        self.batch_size = batch_size
        self.adaptive = adaptive
        self.ignore_keys = ignore_keys
        # topic -> its sticky partition and the bytes appended to it (the producer's fast
        # path reads and counts it under the producer's lock)
        self.sticky: dict[str, _Sticky] = {}

    def uses_sticky(self, key: bytes | None) -> bool:
        return key is None or self.ignore_keys

    def partition(self, topic: str, key: bytes | None, partition_count: int,
                  available: Sequence[int]) -> int:
        if not self.uses_sticky(key):
            return murmur2_partition(key or b"", partition_count)
        st = self.sticky.get(topic)
        if st is None or st.partition >= partition_count:
            st = self.sticky[topic] = _Sticky(self._next(partition_count, available, None))
        return st.partition

    def on_append(self, topic: str, partition: int, appended_bytes: int,
                  enable_switch: bool, partition_count: int, available: Sequence[int],
                  queue_sizes: Callable[[], tuple[dict[int, int], int]] | None = None) -> None:
        """A sticky record of appended_bytes went to partition; enable_switch: its batches are
        all full. queue_sizes() gives the accumulator's (sizes per available partition,
        partitions with a queue), read only when switching."""
        st = self.sticky.get(topic)
        if st is None or st.partition != partition:
            return
        st.produced_bytes += appended_bytes
        if st.produced_bytes < self.batch_size:
            return
        if enable_switch or st.produced_bytes >= 2 * self.batch_size:
            stats = None
            if self.adaptive and queue_sizes is not None:
                sizes, with_queues = queue_sizes()
                stats = load_stats(sizes, with_queues, partition_count)
            self.sticky[topic] = _Sticky(self._next(partition_count, available, stats))

    def sticky_partition(self, topic: str, partition_count: int, available: Sequence[int], queues: Any,
                         leader_for: Callable[[str, int], int | None]) -> int:
        """The partition for the next sticky record, switching first if a switch held back by
        an incomplete batch is due now (that batch was sent or filled): Kafka's
        RecordAccumulator.partitionChanged."""
        st = self.sticky.get(topic)
        if st is None or st.partition >= partition_count:
            return self.partition(topic, None, partition_count, available)
        if st.produced_bytes >= self.batch_size and queues.all_batches_full((topic, st.partition)):
            self.on_append(topic, st.partition, 0, True, partition_count, available,
                           lambda: queues.queue_sizes(topic, leader_for))
            return self.sticky[topic].partition
        return st.partition

    def appended(self, topic: str, partition: int, appended_bytes: int, partition_count: int,
                 available: Sequence[int], queues: Any, leader_for: Callable[[str, int], int | None]) -> None:
        """on_append as the producer calls it for every sticky record: `queues` is its record
        accumulator (all_batches_full, queue_sizes), asked only once a switch is due."""
        st = self.sticky.get(topic)
        if st is None or st.partition != partition:
            return
        if st.produced_bytes + appended_bytes < self.batch_size:
            st.produced_bytes += appended_bytes  # the common case, kept cheap
            return
        self.on_append(topic, partition, appended_bytes, queues.all_batches_full((topic, partition)),
                       partition_count, available, lambda: queues.queue_sizes(topic, leader_for))

    def open_lane(self, topic: str, partition: int, builder: Any) -> None:
        """Let the producer's fast path append the topic's next sticky records straight into
        builder (the partition's open batch, just appended to; the topic's lane closed) while
        no switch can come due: while the batch stays below batch.size (a switch needs its
        batches full; the record that fills it also wakes the sender) and the bytes produced
        stay below 2 x batch.size. builder.fast_limit holds the fast path to those bounds; the
        record past them takes the general way (and this rule) again."""
        st = self.sticky.get(topic)
        if st is None or st.partition != partition or st.lane is not None:
            return
        limit = min(self.batch_size, builder.size + 2 * self.batch_size - st.produced_bytes) - 1
        if limit > builder.size:
            builder.limit_fast_appends(limit)
            st.lane, st.lane_size, st.lane_count = builder, builder.size, builder.record_count

    def close_lanes(self) -> int:
        """close_lane for every topic: the records their lanes took."""
        return sum(st.close_lane() for st in self.sticky.values())

    def on_new_batch(self, topic: str, partition_count: int, available: Sequence[int],
                     previous: int) -> None:
        pass  # switching is by bytes (on_append), not by batches

    def _next(self, count: int, available: Sequence[int], stats: tuple[list[int], list[int]] | None) -> int:
        if stats is not None:
            ids, cft = stats
            return ids[bisect.bisect_right(cft, self._rng.randrange(cft[-1]))]
        pool = available or range(count)
        return pool[self._rng.randrange(len(pool))]


class StickyPerBatchPartitioner:
    """murmur2 for keys; sticky for null keys the way Kafka's Java client did from 2.4 to 3.2
    (KIP-480): move to another partition, uniformly at random, when a new batch is needed.
    Kept to compare with the built-in partitioner (lab 02).

    `sticky_null_keys=False` hashes null keys like empty ones (librdkafka's "murmur2").
    """

    def __init__(self, rng: random.Random | None = None, sticky_null_keys: bool = True):
        self._rng = rng or random.Random()
        self._sticky: dict[str, int] = {}
        self._sticky_null_keys = sticky_null_keys

    def partition(self, topic: str, key: bytes | None, partition_count: int,
                  available: Sequence[int]) -> int:
        if key is not None or not self._sticky_null_keys:
            return murmur2_partition(key or b"", partition_count)
        p = self._sticky.get(topic)
        if p is None or p >= partition_count:
            p = self._pick(topic, partition_count, available, None)
        return p

    def on_new_batch(self, topic: str, partition_count: int, available: Sequence[int],
                     previous: int) -> None:
        # Only the partition we were sticking to moves us on; a keyed record opening a batch
        # elsewhere must not.
        if self._sticky.get(topic) == previous:
            self._pick(topic, partition_count, available, previous)

    def _pick(self, topic: str, count: int, available: Sequence[int], previous: int | None) -> int:
        pool = [p for p in (available or range(count)) if p != previous] or [previous or 0]
        p = pool[self._rng.randrange(len(pool))]
        self._sticky[topic] = p
        return p


class RoundRobinPartitioner:
    """Every record to the next partition in turn (Java's RoundRobinPartitioner); keys ignored."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def partition(self, topic: str, key: bytes | None, partition_count: int,
                  available: Sequence[int]) -> int:
        n = self._next.get(topic, 0)
        self._next[topic] = n + 1
        pool = available or range(partition_count)
        return pool[n % len(pool)]

    def on_new_batch(self, topic: str, partition_count: int, available: Sequence[int],
                     previous: int) -> None:
        pass


class RandomPartitioner:
    """Every record to a random available partition (librdkafka's "random")."""

    def __init__(self, rng: random.Random | None = None):
        self._rng = rng or random.Random()

    def partition(self, topic: str, key: bytes | None, partition_count: int,
                  available: Sequence[int]) -> int:
        pool = available or range(partition_count)
        return pool[self._rng.randrange(len(pool))]

    def on_new_batch(self, topic: str, partition_count: int, available: Sequence[int],
                     previous: int) -> None:
        pass


class CallablePartitioner:
    """A learner's function (key, partition_count, available) -> partition."""

    def __init__(self, fn: Callable[[bytes | None, int, Sequence[int]], int]):
        self._fn = fn

    def partition(self, topic: str, key: bytes | None, partition_count: int,
                  available: Sequence[int]) -> int:
        return self._fn(key, partition_count, available)

    def on_new_batch(self, topic: str, partition_count: int, available: Sequence[int],
                     previous: int) -> None:
        pass


def make_partitioner(spec: Any, rng: random.Random | None = None, *, batch_size: int = 16384,
                     adaptive: bool = True, ignore_keys: bool = False) -> Partitioner:
    """The partitioner a producer config names (see config.PARTITIONERS) or wraps (a callable);
    the keyword arguments are the built-in partitioner's batch.size and partitioner.* configs."""
    if callable(spec) and not isinstance(spec, str):
        return CallablePartitioner(spec)
    if spec == "murmur2_random":
        return BuiltInPartitioner(rng, batch_size=batch_size, adaptive=adaptive, ignore_keys=ignore_keys)
    if spec == "sticky_per_batch":
        return StickyPerBatchPartitioner(rng)
    if spec == "murmur2":
        return StickyPerBatchPartitioner(rng, sticky_null_keys=False)
    if spec == "round_robin":
        return RoundRobinPartitioner()
    if spec == "random":
        return RandomPartitioner(rng)
    raise ConfigError(
        f"producer config 'partitioner'={spec!r} is not one of murmur2_random, sticky_per_batch, "
        "murmur2, round_robin, random, or a callable (key, partition_count, available) -> int"
    )


def check_partition(partition: Any, topic: str, partition_count: int, source: str) -> int:
    """A partition index from `source` (a partitioner or produce()), or a clear error."""
    if isinstance(partition, bool) or not isinstance(partition, int):
        raise TypeError(f"{source} gave partition {partition!r} for topic {topic!r}: "
                        "a partition is an int")
    if not 0 <= partition < partition_count:
        raise ValueError(f"{source} gave partition {partition} but topic {topic!r} has "
                         f"{partition_count} partitions: use one in 0..{partition_count - 1}")
    return partition
