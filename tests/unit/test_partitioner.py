"""Partitioners: murmur2 bit-exact with Kafka's Java client, sticky null keys, round robin."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from kafka.partitioner.default import murmur2 as reference_murmur2

from kafkalab.client.accumulator import RecordAccumulator
from kafkalab.client.partitioner import (
    BuiltInPartitioner,
    CallablePartitioner,
    RoundRobinPartitioner,
    StickyPerBatchPartitioner,
    check_partition,
    load_stats,
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
    p = StickyPerBatchPartitioner(random.Random(1))
    parts = {p.partition("t", b"user-1", 6, range(6)) for _ in range(100)}
    assert parts == {murmur2_partition(b"user-1", 6)}


def test_pre_3_3_rule_null_keys_stick_until_new_batch_then_move():
    p = StickyPerBatchPartitioner(random.Random(3))
    first = p.partition("t", None, 6, [0, 1, 2, 3, 4, 5])
    assert {p.partition("t", None, 6, [0, 1, 2, 3, 4, 5]) for _ in range(50)} == {first}
    p.on_new_batch("t", 6, [0, 1, 2, 3, 4, 5], first)
    second = p.partition("t", None, 6, [0, 1, 2, 3, 4, 5])
    assert second != first


def test_sticky_ignores_new_batch_on_other_partition():
    p = StickyPerBatchPartitioner(random.Random(3))
    first = p.partition("t", None, 6, range(6))
    p.on_new_batch("t", 6, range(6), (first + 1) % 6)
    assert p.partition("t", None, 6, range(6)) == first


def test_sticky_only_picks_available_partitions():
    p = StickyPerBatchPartitioner(random.Random(5))
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
    assert isinstance(make_partitioner("murmur2_random"), BuiltInPartitioner)
    assert isinstance(make_partitioner("sticky_per_batch"), StickyPerBatchPartitioner)
    assert isinstance(make_partitioner("round_robin"), RoundRobinPartitioner)
    assert isinstance(make_partitioner(lambda k, n, a: 0), CallablePartitioner)
    with pytest.raises(ConfigError, match="round_robin"):
        make_partitioner("fnv1a")


# -- Kafka's built-in partitioner (3.3+, KIP-794) ----------------------------------------------

def test_builtin_switches_after_batch_size_bytes_not_at_a_new_batch():
    p = BuiltInPartitioner(random.Random(3), batch_size=1000, adaptive=False)
    first = p.partition("t", None, 6, range(6))
    p.on_new_batch("t", 6, range(6), first)  # the old trigger does nothing now
    for _ in range(9):
        p.on_append("t", first, 100, True, 6, range(6))
        assert p.partition("t", None, 6, range(6)) == first  # 900 bytes: stays
    p.on_append("t", first, 100, True, 6, range(6))  # 1000 bytes with its batch full: a new pick
    assert p.sticky["t"].produced_bytes == 0
    seen = set()
    for _ in range(50):
        cur = p.partition("t", None, 6, range(6))
        seen.add(cur)
        p.on_append("t", cur, 1000, True, 6, range(6))
    assert len(seen) > 1


def test_builtin_waits_for_a_full_batch_up_to_twice_batch_size():
    p = BuiltInPartitioner(random.Random(3), batch_size=1000, adaptive=False)
    first = p.partition("t", None, 6, range(6))
    p.on_append("t", first, 1500, False, 6, range(6))  # past batch.size, batch not full
    assert p.sticky["t"].produced_bytes == 1500
    p.on_append("t", first, 500, False, 6, range(6))  # 2 x batch.size: moves regardless
    assert p.sticky["t"].produced_bytes == 0


def test_builtin_hashes_keys_unless_told_to_ignore_them():
    p = BuiltInPartitioner(random.Random(1))
    assert {p.partition("t", b"user-1", 6, range(6)) for _ in range(20)} == {murmur2_partition(b"user-1", 6)}
    q = BuiltInPartitioner(random.Random(1), ignore_keys=True)
    sticky = q.partition("t", None, 6, range(6))
    assert q.partition("t", b"user-1", 6, range(6)) == sticky


def test_load_stats_weight_short_queues_like_kafka():
    # Kafka's example: queues 0 3 1 -> weights 4 1 3 -> cumulative 4 5 8.
    assert load_stats({0: 0, 1: 3, 2: 1}, 3, 3) == ([0, 1, 2], [4, 5, 8])
    assert load_stats({0: 2, 1: 2, 2: 2}, 3, 3) is None  # all equal: uniform
    assert load_stats({0: 2, 2: 2}, 3, 3) == ([0, 2], [1, 2])  # one left out: still weighted
    assert load_stats({0: 0, 1: 3}, 2, 3) is None  # partition 2 never had a batch yet


def test_adaptive_partitioning_prefers_partitions_with_short_queues():
    sizes = {0: 0, 1: 9, 2: 9}  # partition 0's broker keeps up, 1 and 2 are backed up
    picks = Counter()
    p = BuiltInPartitioner(random.Random(11), batch_size=100)
    for _ in range(2000):
        cur = p.partition("t", None, 3, range(3))
        picks[cur] += 1
        p.on_append("t", cur, 100, True, 3, range(3), lambda: (sizes, 3))
    assert picks[0] > 0.75 * sum(picks.values())  # weights 10:1:1
    uniform = Counter()
    u = BuiltInPartitioner(random.Random(11), batch_size=100, adaptive=False)
    for _ in range(2000):
        cur = u.partition("t", None, 3, range(3))
        uniform[cur] += 1
        u.on_append("t", cur, 100, True, 3, range(3), lambda: (sizes, 3))
    assert max(uniform.values()) < 0.45 * sum(uniform.values())


def test_accumulator_queue_sizes_leave_out_slow_leaders():
    acc = RecordAccumulator(batch_size=100, partition_availability_timeout_ms=500)
    acc.try_append("u", 0, None, b"x", None, 0, None, 0)
    first = acc.last_appended_bytes  # a new batch counts with its header, as Kafka's appendedBytes
    assert first == acc.batches[("u", 0)][0].builder.estimated_size
    acc.try_append("u", 0, None, b"x", None, 0, None, 0)
    assert 0 < acc.last_appended_bytes < first
    for part in (0, 1, 2):
        for _ in range(part + 1):
            acc.try_append("t", part, None, b"x" * 200, None, 0, None, 0)
    leaders = {0: 1, 1: 2, 2: 3}
    assert acc.queue_sizes("t", lambda t, p: leaders[p]) == ({0: 1, 1: 2, 2: 3}, 3)
    acc.update_node_latency(3, 0, can_drain=True)
    acc.update_node_latency(3, 1000, can_drain=False)  # ready but blocked for 1 s
    assert acc.queue_sizes("t", lambda t, p: leaders[p]) == ({0: 1, 1: 2}, 3)
    assert acc.all_batches_full(("t", 0)) and acc.all_batches_full(("t", 9))


def test_keyed_partitions_come_from_a_bounded_cache_of_hashes(monkeypatch):
    from kafkalab.client import partitioner as mod

    monkeypatch.setattr(mod, "_HASHES", {})
    monkeypatch.setattr(mod, "_HASHES_MAX", 8)
    keys = [f"key-{i}".encode() for i in range(20)] + [b"x" * 300, bytearray(b"key-3")]
    for _ in range(2):  # computed, then (mostly) from the cache: the same answers
        for k in keys:
            assert mod.murmur2_partition(k, 7) == (mod.murmur2(bytes(k)) & 0x7FFFFFFF) % 7
            assert len(mod._HASHES) <= 8
    assert b"x" * 300 not in mod._HASHES


def _drive(values: list[bytes], drain_at: set[int], seed: int, *, lanes: bool, batch_size: int = 2000):
    """Null-key records through the built-in partitioner and an accumulator as produce()
    drives them: the general way for every record, or (lanes) into the topic's open lane
    first, the general way only when it refuses. Returns where each record went, every
    batch's bytes and the bytes the partitioner counted as produced at the end; and how many
    records the lanes took."""
    from kafkalab.client.accumulator import APPENDED, APPENDED_WAKE

    part = BuiltInPartitioner(random.Random(seed), batch_size=batch_size)
    acc = RecordAccumulator(batch_size=batch_size, linger_ms=1e9)

    def leader_for(topic, p):
        return p % 2

    placed, drained, records, fast = [], [], 0, 0
    for i, value in enumerate(values):
        ts = 1_000 + i // 7  # a new millisecond every seven records
        if i in drain_at:  # the sender takes a batch per partition (at the same records both ways)
            for batches in acc.drain([0, 1], leader_for, 0.0).values():
                drained += [b.builder.build() for b in batches]
        st = part.sticky.get("t")
        if lanes and st is not None and st.lane is not None and st.lane.append_value(value, ts):
            placed.append(st.partition)
            fast += 1
            continue
        if st is not None:
            records += st.close_lane()
        p = part.sticky_partition("t", 4, (0, 1, 2, 3), acc, leader_for)
        assert acc.try_append("t", p, None, value, None, ts, None, 0.0) in (APPENDED, APPENDED_WAKE)
        records += 1
        part.appended("t", p, acc.last_appended_bytes, 4, (0, 1, 2, 3), acc, leader_for)
        if lanes:
            part.open_lane("t", p, acc.batches[("t", p)][-1].builder)
        placed.append(p)
    records += part.sticky["t"].close_lane()
    assert records == len(values)  # the lanes' records, counted when they close
    left = {tp: [b.builder.build() for b in dq] for tp, dq in acc.batches.items()}
    return (placed, drained, left, part.sticky["t"].produced_bytes), fast


@pytest.mark.parametrize("seed", range(6))
def test_the_fast_path_lane_places_records_as_the_rule_does(seed):
    """produce()'s fast path appends into the sticky partition's open batch with no partitioner
    call per record (BuiltInPartitioner.open_lane). The lane's bounds must keep every switch
    decision on the general path: record for record, the same partitions (adaptive weights
    included), the same batches and the same produced bytes as calling the rule every time."""
    rng = random.Random(seed)
    values = [rng.randbytes(rng.choice((20, 20, 20, 60, 300))) for _ in range(3000)]
    drain_at = set(rng.sample(range(3000), 150))
    general, _ = _drive(values, drain_at, seed, lanes=False)
    fast, through_lanes = _drive(values, drain_at, seed, lanes=True)
    assert fast == general
    assert len(set(general[0])) == 4  # it did switch, among all four partitions
    assert through_lanes > 0.9 * len(values)  # and most records took the lane
