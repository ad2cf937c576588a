"""Checkers and reference functions for lab 02 (Partitioning and ordering)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from checkers import Feedback, call_learner, not_answered, right, wrong

from kafkalab.client.partitioner import murmur2


def keyed_partition_reference(key: bytes, partition_count: int, available: Sequence[int] = ()) -> int:
    """Kafka's rule for a record with a key: the murmur2 hash, top bit masked off (Java ints are
    signed, and Kafka uses `& 0x7fffffff`, not abs()), mod the number of partitions — ALL of
    them, whether or not they have a leader right now."""
    return (murmur2(key) & 0x7FFFFFFF) % partition_count


def _unmasked(key: bytes, n: int) -> int:
    return murmur2(key) % n


def _java_abs(key: bytes, n: int) -> int:
    h = murmur2(key)
    signed = h - (1 << 32) if h >> 31 else h
    return abs(signed) % n


# (key, partition count, partitions with a leader). Several keys hash with the top bit set,
# where forgetting the mask changes the answer; some cases have a partition without a leader.
PARTITIONER_CASES: list[tuple[bytes, int, list[int]]] = [
    (b"user-42", 6, [0, 1, 2, 3, 4, 5]),
    (b"alice", 6, [0, 1, 2, 3, 4, 5]),
    (b"bob", 6, [0, 1, 2, 3, 4, 5]),           # top bit set
    (b"order-35", 6, [0, 1, 2, 3, 4, 5]),      # top bit set
    (b"alice", 8, list(range(8))),
    (b"", 4, [0, 1, 2, 3]),
    (b"order-8", 3, [0, 1, 2]),                # top bit set
    (bytes(range(40)), 12, list(range(12))),
    (b"order-13", 6, [0, 1, 3, 4, 5]),         # partition 2 has no leader; top bit set
    (b"alice", 6, [0, 1, 2, 4, 5]),            # partition 3 (alice's) has no leader
    (b"carol", 1, [0]),
]


def check_partitioner(fn: Callable[[bytes, int, Sequence[int]], int]) -> Feedback:
    """Exercise 1: my_partitioner(key, partition_count, available) with Kafka's keyed rule."""
    for key, count, available in PARTITIONER_CASES:
        done, got = call_learner(fn, key, count, list(available))
        if not done:
            return got
        want = keyed_partition_reference(key, count)
        if got == want:
            continue
        case = f"my_partitioner({key!r}, {count}, {available}) returned {got!r}, expected {want}"
        if isinstance(got, bool) or not isinstance(got, int):
            return wrong(f"{case}: return a partition number (an int).")
        if not 0 <= got < count:
            return wrong(f"{case}: partitions are numbered 0 .. partition_count - 1; take the hash "
                         "mod partition_count.")
        if len(available) < count and got in available and got != want:
            return wrong(f"{case}: a keyed record goes to its hash's partition even when that one "
                         "has no leader right now (it waits or fails there). Hash over ALL "
                         "partition_count partitions, not over `available`, or the key's partition "
                         "(and its order) would change every time a broker goes down.")
        if got == _unmasked(key, count) or got == _java_abs(key, count):
            return wrong(f"{case}: this key's murmur2 hash has its top bit set. Java sees it as a "
                         "negative int, and Kafka makes it non-negative with `& 0x7fffffff` "
                         "(not abs(), not the raw unsigned value) before taking `% partition_count`.")
        return wrong(f"{case}: use Kafka's hash, murmur2(key) (not Python's hash(), which changes "
                     "between runs), then `& 0x7fffffff`, then `% partition_count`.")
    return right("that is Kafka's default partitioner for keyed records, bit for bit: the same key "
                 "lands on the same partition in Java, librdkafka's murmur2 and here.")


def check_partition_prediction(answer: Any, key: bytes, partition_count: int) -> Feedback:
    """Exercise 2: predict the partition of `key` in a topic of `partition_count` partitions."""
    if answer is None:
        return not_answered()
    if isinstance(answer, bool) or not isinstance(answer, int):
        return wrong("give the partition as a whole number, for example 3.")
    want = keyed_partition_reference(key, partition_count)
    if answer == want:
        return right(f"{key!r} -> partition {want}: (murmur2 & 0x7fffffff) % {partition_count}.")
    if not 0 <= answer < partition_count:
        return wrong(f"a topic with {partition_count} partitions has partitions 0 .. {partition_count - 1}.")
    if answer == _unmasked(key, partition_count):
        return wrong(f"close: you took the unsigned hash mod {partition_count}. Its top bit is set, "
                     "so Java sees a negative number; Kafka masks that bit off (`& 0x7fffffff`) first.")
    if answer == _java_abs(key, partition_count):
        return wrong("close: Kafka does not use abs() of the signed hash (abs(Integer.MIN_VALUE) is "
                     "still negative in Java); it masks the top bit off with `& 0x7fffffff`.")
    return wrong(f"compute murmur2({key!r}) with kafkalab.client.partitioner.murmur2, "
                 f"then `& 0x7fffffff`, then `% {partition_count}`.")
