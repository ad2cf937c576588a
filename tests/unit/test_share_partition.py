"""A share-partition's record states (KIP-932) with an injected clock."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from kafkalab.broker.share_partition import ACCEPT, REJECT, RELEASE, SharePartition


def sp(start=0, **kw):
    args = {"lock_duration_ms": 1000, "delivery_limit": 3, "max_in_flight": 100, **kw}
    return SharePartition(start, **args)


def test_consumers_split_records_and_none_is_acquired_twice():
    p = sp()
    a = p.acquire("a", 10, 4, 0)
    b = p.acquire("b", 10, 4, 0)
    c = p.acquire("c", 10, 4, 0)
    assert a == [(0, 3, 1)] and b == [(4, 7, 1)] and c == [(8, 9, 1)]
    assert p.acquire("a", 10, 4, 0) == []  # everything is held
    assert p.acknowledge("a", 0, 3, [ACCEPT]) == ErrorCode.none
    assert p.spso == 4 and p.counts()["acquired"] == 6


def test_release_and_lock_expiry_redeliver_with_a_higher_delivery_count():
    p = sp()
    p.acquire("a", 3, 3, 0)
    assert p.acknowledge("a", 0, 2, [ACCEPT, RELEASE, ACCEPT]) == ErrorCode.none
    assert p.spso == 1 and p.acquire("b", 3, 10, 10) == [(1, 1, 2)]
    assert p.expire_locks(500) == 0 and p.expire_locks(1010) == 1
    assert p.acquire("c", 3, 10, 1100) == [(1, 1, 3)] and p.redelivered == 2


def test_the_delivery_limit_archives_a_poison_pill():
    p = sp(delivery_limit=2)
    p.acquire("a", 1, 1, 0)
    p.expire_locks(1000)
    p.acquire("a", 1, 1, 1000)
    p.expire_locks(2000)  # second delivery failed too: archived, never delivered again
    assert p.acquire("a", 1, 1, 2000) == [] and p.spso == 1 and p.counts()["archived"] == 0


def test_acknowledging_a_record_no_longer_held_is_refused_and_changes_nothing():
    p = sp()
    p.acquire("a", 2, 2, 0)
    p.expire_locks(1000)
    p.acquire("b", 2, 2, 1000)
    assert p.acknowledge("a", 0, 1, [ACCEPT]) == ErrorCode.invalid_record_state
    assert p.acknowledge("b", 0, 1, [REJECT]) == ErrorCode.none and p.spso == 2


def test_max_in_flight_stops_new_acquisitions():
    p = sp(max_in_flight=3)
    assert p.acquire("a", 10, 10, 0) == [(0, 2, 1)]
    p.acknowledge("a", 0, 0, [ACCEPT])
    assert p.acquire("b", 10, 10, 0) == [(3, 3, 1)]


def test_the_persisted_state_keeps_acknowledgements_and_frees_acquisitions():
    p = sp()
    p.acquire("a", 6, 6, 0)
    p.acknowledge("a", 1, 1, [ACCEPT])
    p.acknowledge("a", 2, 2, [REJECT])
    p.acknowledge("a", 0, 0, [RELEASE])
    restored = sp(state=p.state())
    assert restored.spso == 0 and restored.speo == 6
    got = restored.acquire("b", 6, 10, 0)
    assert got == [(0, 0, 2), (3, 5, 2)]  # 1 and 2 are done; the rest come again


def test_share_snapshot_records_round_trip():
    import uuid

    from kafkalab.broker.share_state import decode_snapshot, snapshot_record, state_partition

    key = ("queue", str(uuid.UUID(int=3)), 2)
    state = (0, 17, [(17, 17, 0, 2), (18, 20, 2, 1), (21, 21, 4, 5)])
    k, v = snapshot_record(key, state, leader_epoch=4)
    assert decode_snapshot(k, v) == (key, state) and decode_snapshot(k, None) == (key, None)
    assert 0 <= state_partition(key, 6) < 6
