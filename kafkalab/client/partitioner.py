"""Partitioners: which partition a record goes to. Pure: no metadata fetching, no clocks.

Each takes the topic, the serialized key, the partition count and the partitions that have a
leader right now, and returns a partition index. The default matches Kafka's Java client:
keyed records go to murmur2(key) mod partitions (so a key always lands on the same partition),
null-key records stick to one partition until a batch for it is closed, then hop randomly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
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


def murmur2_partition(key: bytes, partition_count: int) -> int:
    """Kafka's keyed partition: the hash made non-negative (mask, not abs) mod the count."""
    return (murmur2(key) & 0x7FFFFFFF) % partition_count


class Partitioner(Protocol):
    def partition(self, topic: str, key: bytes | None, partition_count: int,
                  available: Sequence[int]) -> int: ...

    def on_new_batch(self, topic: str, partition_count: int, available: Sequence[int],
                     previous: int) -> None: ...


class DefaultPartitioner:
    """murmur2 for keys; sticky for null keys (Kafka's Java client since 2.4, KIP-480).

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


def make_partitioner(spec: Any, rng: random.Random | None = None) -> Partitioner:
    """The partitioner a producer config names (see config.PARTITIONERS) or wraps (a callable)."""
    if callable(spec) and not isinstance(spec, str):
        return CallablePartitioner(spec)
    if spec == "murmur2_random":
        return DefaultPartitioner(rng)
    if spec == "murmur2":
        return DefaultPartitioner(rng, sticky_null_keys=False)
    if spec == "round_robin":
        return RoundRobinPartitioner()
    if spec == "random":
        return RandomPartitioner(rng)
    raise ConfigError(
        f"producer config 'partitioner'={spec!r} is not one of murmur2_random, murmur2, "
        "round_robin, random, or a callable (key, partition_count, available) -> int"
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
