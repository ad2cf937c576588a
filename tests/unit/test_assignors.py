"""The assignors: balanced, deterministic, sticky where they can be, cooperative revokes only what moves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalab.client.assignors import (
    ASSIGNORS,
    Subscription,
    check_assignment,
    cooperative_sticky_assign,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
    range_assign,
    roundrobin_assign,
    sticky_assign,
)


def subs(n: int, topics=("t",), owned=None) -> dict[str, Subscription]:
    return {f"m{i}": Subscription(list(topics), list((owned or {}).get(f"m{i}", [])), 1) for i in range(n)}


def owners(assignment):
    out = {}
    for m, tps in assignment.items():
        for tp in tps:
            assert tp not in out, f"{tp} given twice"
            out[tp] = m
    return out


@pytest.mark.parametrize("name", sorted(ASSIGNORS))
@given(members=st.integers(1, 8), partitions=st.integers(0, 30))
@settings(max_examples=40, deadline=None)
def test_every_partition_once_and_balanced(name, members, partitions):
    s = subs(members)
    a = ASSIGNORS[name]({"t": partitions}, s)
    check_assignment(a, {"t": partitions}, s)
    assert sorted(owners(a)) == [("t", p) for p in range(partitions)]
    sizes = [len(tps) for tps in a.values()]
    assert max(sizes) - min(sizes) <= 1
    assert ASSIGNORS[name]({"t": partitions}, s) == a  # deterministic


def test_range_gives_blocks_and_roundrobin_deals():
    s = subs(3)
    assert range_assign({"t": 6}, s) == {"m0": [("t", 0), ("t", 1)], "m1": [("t", 2), ("t", 3)],
                                         "m2": [("t", 4), ("t", 5)]}
    assert roundrobin_assign({"t": 6}, s)["m0"] == [("t", 0), ("t", 3)]


def test_range_is_unfair_over_many_topics_roundrobin_is_not():
    s = subs(2, topics=("a", "b", "c"))
    counts = {"a": 3, "b": 3, "c": 3}
    r = range_assign(counts, s)
    assert len(r["m0"]) - len(r["m1"]) == 3  # the first member gets the extra one of every topic
    rr = roundrobin_assign(counts, s)
    assert abs(len(rr["m0"]) - len(rr["m1"])) <= 1


def test_range_skips_members_not_subscribed():
    s = {"a": Subscription(["x"]), "b": Subscription(["y"])}
    assert range_assign({"x": 2, "y": 2}, s) == {"a": [("x", 0), ("x", 1)], "b": [("y", 0), ("y", 1)]}


def test_sticky_keeps_what_it_can_when_a_member_leaves():
    before = range_assign({"t": 6}, subs(3))
    owned = {m: tps for m, tps in before.items() if m != "m1"}
    after = sticky_assign({"t": 6}, {m: Subscription(["t"], owned[m], 1) for m in owned})
    for m in owned:
        assert set(before[m]) <= set(after[m])
    assert sorted(owners(after)) == [("t", p) for p in range(6)]


@given(members=st.integers(2, 8), partitions=st.integers(1, 30))
@settings(max_examples=40, deadline=None)
def test_sticky_moves_only_what_balance_needs_when_one_joins(members, partitions):
    before = sticky_assign({"t": partitions}, subs(members - 1))
    s = subs(members, owned=before)
    after = sticky_assign({"t": partitions}, s)
    moved = sum(1 for tp, m in owners(after).items() if owners(before).get(tp) != m)
    assert moved == len(after[f"m{members - 1}"])  # only what the newcomer gets moves


def test_cooperative_revokes_only_what_moves_then_assigns_in_a_second_round():
    first = cooperative_sticky_assign({"t": 6}, subs(2))
    s = subs(3, owned=first)  # m2 joins
    round1 = cooperative_sticky_assign({"t": 6}, s)
    assert round1["m2"] == []  # nothing still owned by another member is handed over
    revoked = {m: set(first[m]) - set(round1[m]) for m in first}
    assert sum(len(r) for r in revoked.values()) == 2
    for m in first:  # the rest stays put
        assert set(round1[m]) <= set(first[m])
    # the owners gave up what was revoked and rejoin: round 2 gives it to m2
    round2 = cooperative_sticky_assign({"t": 6}, subs(3, owned=round1))
    assert set(round2["m2"]) == set().union(*revoked.values())
    assert sorted(owners(round2)) == [("t", p) for p in range(6)]


def test_conflicting_claims_go_to_the_newest_generation():
    s = {"a": Subscription(["t"], [("t", 0)], generation=1), "b": Subscription(["t"], [("t", 0)], generation=2)}
    assert ("t", 0) in sticky_assign({"t": 2}, s)["b"]


def test_check_assignment_catches_a_bad_custom_assignor():
    s = subs(2)
    with pytest.raises(ValueError, match="both"):
        check_assignment({"m0": [("t", 0)], "m1": [("t", 0)]}, {"t": 1}, s)
    with pytest.raises(ValueError, match="does not"):
        check_assignment({"m0": [("u", 0)]}, {"t": 1}, s)


def test_consumer_protocol_bytes_round_trip():
    sub = Subscription(["b", "a"], [("a", 1), ("a", 0)], 7, b"x")
    back = decode_subscription(encode_subscription(sub))
    assert back.topics == ["a", "b"] and back.owned_partitions == [("a", 0), ("a", 1)]
    assert back.generation == 7 and back.user_data == b"x"
    data = encode_assignment([("t", 2), ("t", 0), ("u", 1)])
    assert data[:2] == b"\x00\x03"  # Kafka's version prefix
    assert decode_assignment(data) == [("t", 0), ("t", 2), ("u", 1)]
    assert decode_assignment(b"") == []
