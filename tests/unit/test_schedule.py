"""The fault schedule: deterministic per seed, bounded, and it always leaves a whole cluster."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalab.workloads.schedule import (
    FAULT_KINDS,
    NETWORK_KINDS,
    UNDO,
    FaultAction,
    broken_after,
    fault_schedule,
)


def simulate(actions: list[FaultAction]) -> int:
    """Replay the actions, checking each undoes a live fault; returns the most brokers broken
    at once."""
    broken: dict[int, str] = {}
    most = 0
    for a in actions:
        if a.kind in UNDO:
            assert a.target not in broken, f"{a} breaks broker {a.target}, which is already broken"
            broken[a.target] = a.kind
        elif a.kind == "heal":
            assert any(k in NETWORK_KINDS for k in broken.values()), f"{a} heals nothing"
            broken = {b: k for b, k in broken.items() if k not in NETWORK_KINDS}
        else:
            assert a.target in broken and UNDO[broken[a.target]] == a.kind, f"{a} undoes nothing"
            del broken[a.target]
        most = max(most, len(broken))
    assert not broken, f"left broken: {broken}"
    return most


def test_same_seed_same_schedule_and_other_seeds_differ():
    a = fault_schedule(7, 30, 3)
    assert a == fault_schedule(7, 30, 3)
    assert any(fault_schedule(s, 30, 3) != a for s in range(8, 12))


def test_default_schedule_shape():
    actions = fault_schedule(1, 30, 3)
    assert actions == sorted(actions, key=lambda a: a.at_s)
    faults = [a for a in actions if a.kind in UNDO]
    assert len(faults) >= 4  # a fault every couple of seconds over 30 s
    assert {a.kind for a in faults} <= {"kill", "pause", "partition"}
    assert all(1 <= a.target <= 3 for a in actions if a.target is not None)
    assert actions[0].at_s == pytest.approx(1.5)  # a healthy start
    assert max(a.at_s for a in actions) <= 30
    assert simulate(actions) == 1


def test_intervals_follow_every_s():
    actions = fault_schedule(3, 60, 3, every_s=(2.0, 2.5))
    gaps = [b.at_s - a.at_s for a, b in zip(actions, actions[1:], strict=False)]
    assert all(2.0 - 1e-3 <= g <= 2.5 + 1e-3 for g in gaps[:-1])  # the last repair may be clamped
    assert gaps[-1] >= 0


def test_every_fault_kind_can_be_scheduled_and_is_undone():
    actions = fault_schedule(5, 200, [4, 5, 6], kinds=FAULT_KINDS)
    assert {a.kind for a in actions if a.kind in UNDO} == set(FAULT_KINDS)
    assert {a.target for a in actions if a.target is not None} == {4, 5, 6}
    simulate(actions)


def test_max_faulty_bounds_concurrent_faults():
    actions = fault_schedule(11, 120, 5, kinds=("kill", "pause", "stop"), max_faulty=2)
    assert simulate(actions) == 2


def test_broken_after():
    actions = fault_schedule(2, 20, 3)
    assert broken_after(actions) == {}
    assert broken_after(actions[:1]) == {actions[0].target: actions[0].kind}


def test_short_duration_gives_no_fault():
    assert fault_schedule(1, 1.0, 3) == []


@pytest.mark.parametrize("bad", [
    dict(brokers=0), dict(kinds=()), dict(kinds=("explode",)), dict(every_s=(0, 1)),
    dict(every_s=(3, 2)), dict(max_faulty=0), dict(max_faulty=4),
])
def test_bad_arguments_are_refused(bad):
    args = dict(seed=1, duration_s=10, brokers=3) | bad
    with pytest.raises(ValueError):
        fault_schedule(**args)


def test_fault_action_validation_and_round_trip():
    a = FaultAction(1.25, "kill", 2)
    assert FaultAction.from_dict(a.to_dict()) == a
    assert "kill broker 2" in a.describe()
    with pytest.raises(ValueError):
        FaultAction(1.0, "explode", 1)
    with pytest.raises(ValueError):
        FaultAction(1.0, "kill")
    with pytest.raises(ValueError):
        FaultAction(-1.0, "heal")


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), duration=st.floats(0, 120), brokers=st.integers(1, 6),
       lo=st.floats(0.1, 3), spread=st.floats(0, 3), max_faulty=st.integers(1, 3),
       kinds=st.sets(st.sampled_from(FAULT_KINDS), min_size=1))
def test_any_schedule_is_recoverable_and_bounded(seed, duration, brokers, lo, spread, max_faulty, kinds):
    max_faulty = min(max_faulty, brokers)
    actions = fault_schedule(seed, duration, brokers, every_s=(lo, lo + spread), kinds=sorted(kinds),
                             max_faulty=max_faulty)
    assert actions == fault_schedule(seed, duration, brokers, every_s=(lo, lo + spread),
                                     kinds=sorted(kinds), max_faulty=max_faulty)
    assert all(0 <= a.at_s <= duration + 1e-9 for a in actions)
    assert all(a.at_s <= duration - lo + 1e-3 for a in actions if a.kind in UNDO)
    assert simulate(actions) <= max_faulty
    assert len(actions) <= 2 * (duration / lo + 1)
