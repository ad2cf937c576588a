"""Partitioners: murmur2 bit-exact with Kafka's Java client, sticky null keys, round robin."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from kafka.partitioner.default import murmur2 as reference_murmur2

from kafkalab.client.partitioner import (
    CallablePartitioner,
    DefaultPartitioner,
    RoundRobinPartitioner,
    check_partition,
    make_partitioner,
    murmur2,
    murmur2_partition,
)
from kafkalab.errors import ConfigError


def test_murmur2_matches_kafka_python_for_random_keys():
    rng = random.Random(42)
    for _ in range(5000):
        key = rng.randbytes(rng.randrange(0, 64))
        assert murmur2(key) == reference_murmur2(key), key


def test_keyed_partition_masks_sign_bit_before_modulo():
    rng = random.Random(7)
    for _ in range(2000):
        key = rng.randbytes(rng.randrange(1, 20))
        n = rng.randrange(1, 50)
        assert murmur2_partition(key, n) == (reference_murmur2(key) & 0x7FFFFFFF) % n


def test_same_key_always_same_partition():
    p = DefaultPartitioner(random.Random(1))
    parts = {p.partition("t", b"user-1", 6, range(6)) for _ in range(100)}
    assert parts == {murmur2_partition(b"user-1", 6)}


def test_null_keys_stick_until_new_batch_then_move():
    p = DefaultPartitioner(random.Random(3))
    first = p.partition("t", None, 6, [0, 1, 2, 3, 4, 5])
    assert {p.partition("t", None, 6, [0, 1, 2, 3, 4, 5]) for _ in range(50)} == {first}
    p.on_new_batch("t", 6, [0, 1, 2, 3, 4, 5], first)
    second = p.partition("t", None, 6, [0, 1, 2, 3, 4, 5])
    assert second != first


def test_sticky_ignores_new_batch_on_other_partition():
    p = DefaultPartitioner(random.Random(3))
    first = p.partition("t", None, 6, range(6))
    p.on_new_batch("t", 6, range(6), (first + 1) % 6)
    assert p.partition("t", None, 6, range(6)) == first


def test_sticky_only_picks_available_partitions():
    p = DefaultPartitioner(random.Random(5))
    seen = set()
    for _ in range(100):
        q = p.partition("t", None, 6, [1, 4])
        seen.add(q)
        p.on_new_batch("t", 6, [1, 4], q)
    assert seen == {1, 4}


def test_round_robin_cycles_over_available():
    p = RoundRobinPartitioner()
    got = [p.partition("t", b"same-key", 3, [0, 1, 2]) for _ in range(9)]
    assert Counter(got) == {0: 3, 1: 3, 2: 3}
    assert got[:3] == [0, 1, 2]


def test_callable_partitioner_and_invalid_result():
    p = CallablePartitioner(lambda key, n, available: len(key or b"") % n)
    assert p.partition("t", b"abcd", 3, [0, 1, 2]) == 1
    with pytest.raises(ValueError, match="has 3 partitions"):
        check_partition(7, "t", 3, "the partitioner")
    with pytest.raises(TypeError, match="is an int"):
        check_partition("1", "t", 3, "the partitioner")


def test_make_partitioner_names():
    assert isinstance(make_partitioner("murmur2_random"), DefaultPartitioner)
    assert isinstance(make_partitioner("round_robin"), RoundRobinPartitioner)
    assert isinstance(make_partitioner(lambda k, n, a: 0), CallablePartitioner)
    with pytest.raises(ConfigError, match="round_robin"):
        make_partitioner("fnv1a")
