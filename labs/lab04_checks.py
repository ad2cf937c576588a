"""Checkers and reference functions for lab 04 (Consumer groups & rebalancing)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from checkers import Feedback, call_learner, not_answered, right, wrong

from kafkalab.client.assignors import (
    Subscription,
    cooperative_sticky_assign,
    range_assign,
    roundrobin_assign,
    sticky_assign,
)

TP = tuple[str, int]


def as_subscriptions(subscriptions: Mapping[str, Sequence[str]]) -> dict[str, Subscription]:
    """{member: [topics]} -> the Subscription objects kafkalab's assignors take."""
    return {m: Subscription(list(topics)) for m, topics in subscriptions.items()}


def range_reference(partitions_per_topic: Mapping[str, int],
                    subscriptions: Mapping[str, Sequence[str]]) -> dict[str, list[TP]]:
    """Kafka's RangeAssignor (kafkalab.client.assignors.range_assign) on {member: [topics]}."""
    return range_assign(partitions_per_topic, as_subscriptions(subscriptions))


RANGE_CASES: list[tuple[dict[str, int], dict[str, list[str]]]] = [
    ({"orders": 6}, {"c1": ["orders"], "c2": ["orders"], "c3": ["orders"]}),
    ({"orders": 7}, {"c3": ["orders"], "c1": ["orders"], "c2": ["orders"]}),      # 7 = 3+2+2; ids unsorted
    ({"a": 3, "b": 3}, {"c2": ["a", "b"], "c1": ["a", "b"]}),                      # range's multi-topic skew
    ({"a": 4, "b": 2}, {"c1": ["a"], "c2": ["a", "b"], "c3": ["b"]}),             # different subscriptions
    ({"orders": 2}, {"x": ["orders"], "y": ["orders"], "z": ["orders"]}),          # more members than partitions
    ({"t": 5}, {"m-b": ["t"], "m-a": ["t"]}),
]


def _normalise(got: Any, members: Sequence[str]) -> dict[str, list[TP]] | None:
    if not isinstance(got, Mapping):
        return None
    try:
        return {m: sorted((str(t), int(p)) for t, p in (got.get(m) or [])) for m in members}
    except (TypeError, ValueError):
        return None


def check_range_assignor(fn: Callable[[dict[str, int], dict[str, list[str]]], Any]) -> Feedback:
    """Exercise 1: range_assignor(partitions_per_topic, subscriptions) -> {member: [(topic, p)]}."""
    for ppt, subs in RANGE_CASES:
        done, got = call_learner(fn, dict(ppt), {m: list(t) for m, t in subs.items()})
        if not done:
            return got
        mine = _normalise(got, list(subs))
        if mine is None:
            return wrong(f"return a dict {{member: [(topic, partition), ...]}}, not {got!r}.")
        want = {m: sorted(tps) for m, tps in range_reference(ppt, subs).items()}
        if mine == want:
            continue
        case = f"range_assignor({ppt}, {subs}) returned {mine}, expected {want}"
        given = [tp for tps in mine.values() for tp in tps]
        if any(t not in subs[m] for m, tps in mine.items() for t, _ in tps):
            return wrong(f"{case}: a member only gets partitions of the topics it subscribed to.")
        every = sorted((t, p) for t, n in ppt.items() for p in range(n) if any(t in s for s in subs.values()))
        if sorted(given) != every:
            return wrong(f"{case}: every partition of every subscribed topic goes to exactly one member "
                         "(none twice, none left out).")
        if mine == {m: sorted(tps) for m, tps in roundrobin_assign(ppt, as_subscriptions(subs)).items()}:
            return wrong(f"{case}: that is roundrobin (dealing partitions out in turn). Range gives each "
                         "member one consecutive block of each topic.")
        counts = {m: {t: sum(1 for x, _ in mine[m] if x == t) for t in ppt} for m in subs}
        want_counts = {m: {t: sum(1 for x, _ in want[m] if x == t) for t in ppt} for m in subs}
        if counts != want_counts and sorted(map(str, counts.values())) == sorted(map(str, want_counts.values())):
            return wrong(f"{case}: sort the member ids and give the blocks in that order: the first "
                         "n % k members (by member id, not by dict order) get one partition more.")
        if counts != want_counts:
            return wrong(f"{case}: range works per topic: n partitions over the k members subscribed to "
                         "THAT topic, n // k each, and the first n % k members (sorted by id) get one more.")
        return wrong(f"{case}: each member's partitions are one consecutive block, in member-id order: "
                     "the first member gets partitions 0.., the next one continues where it stopped.")
    return right("that is Kafka's RangeAssignor. Note case 3: with two topics the first member gets "
                 "the extra partition of EACH topic, which is why range is unfair across topics.")


# ---- Exercise 2: predict a rebalance ----------------------------------------------------

SCENARIO_TOPIC, SCENARIO_PARTITIONS = "clicks", 12
SCENARIO_BEFORE = ["a", "b", "c"]
SCENARIO_AFTER = ["a", "b", "c", "d"]


def _moved(before: Mapping[str, Sequence[TP]], after: Mapping[str, Sequence[TP]]) -> int:
    owner = {tp: m for m, tps in before.items() for tp in tps}
    return sum(1 for m, tps in after.items() for tp in tps if owner.get(tp) != m)


def rebalance_reference() -> dict[str, Any]:
    """The answers, computed with kafkalab's assignors (the ones the live groups run)."""
    ppt = {SCENARIO_TOPIC: SCENARIO_PARTITIONS}
    before = range_assign(ppt, {m: Subscription([SCENARIO_TOPIC]) for m in SCENARIO_BEFORE})
    after_range = range_assign(ppt, {m: Subscription([SCENARIO_TOPIC]) for m in SCENARIO_AFTER})
    subs = {m: Subscription([SCENARIO_TOPIC], list(before.get(m, []))) for m in SCENARIO_AFTER}
    after_sticky = sticky_assign(ppt, subs)
    first_round = cooperative_sticky_assign(ppt, subs)
    revoked_coop = sum(len(set(before[m]) - set(first_round[m])) for m in SCENARIO_BEFORE)
    return {"d_gets_range": sorted(p for _, p in after_range["d"]),
            "moved_range": _moved(before, after_range),
            "moved_sticky": _moved(before, after_sticky),
            "revoked_eager": sum(len(tps) for tps in before.values()),
            "revoked_cooperative": revoked_coop}


def check_rebalance_prediction(answer: Mapping[str, Any]) -> Feedback:
    """Exercise 2: a dict with the five predictions (see the notebook)."""
    want = rebalance_reference()
    if not isinstance(answer, Mapping) or all(answer.get(k) is None for k in want):
        return not_answered()
    missing = [k for k in want if answer.get(k) is None]
    if missing:
        return Feedback(None, f"Still to answer: {', '.join(missing)}.")
    try:
        d_gets = sorted(int(p) for p in answer["d_gets_range"])
        nums = {k: int(answer[k]) for k in want if k != "d_gets_range"}
    except (TypeError, ValueError):
        return wrong("d_gets_range is a list of partition numbers; the other four are whole numbers.")
    if d_gets != want["d_gets_range"]:
        if d_gets == [3, 7, 11]:
            return wrong("d_gets_range: [3, 7, 11] is what sticky would do. Range ignores who owned what: "
                         "it recomputes blocks of 12 // 4 = 3 over the sorted ids a, b, c, d.")
        if d_gets == [0, 1, 2]:
            return wrong("d_gets_range: range deals the blocks in sorted member-id order, and 'd' sorts last.")
        return wrong(f"d_gets_range: {d_gets} is not it. 12 partitions over 4 members is blocks of 3, "
                     "handed out in sorted member-id order.")
    if nums["moved_range"] != want["moved_range"]:
        if nums["moved_range"] == want["revoked_eager"]:
            return wrong("moved_range: revoked is not moved. The eager protocol revokes all 12, but most "
                         "come straight back to the same member. Count the partitions whose owner changes.")
        if nums["moved_range"] == want["moved_sticky"]:
            return wrong("moved_range: only 3 would have to move (d needs 3), but range does not remember "
                         "the old owners: the blocks shift. Compare a:0-3, b:4-7, c:8-11 with the new blocks.")
        return wrong("moved_range: write both assignments down (a:0-3, b:4-7, c:8-11, then blocks of 3) "
                     "and count the partitions whose owner differs.")
    if nums["moved_sticky"] != want["moved_sticky"]:
        return wrong("moved_sticky: sticky keeps each member's partitions up to its new quota "
                     "(12 / 4 = 3). d needs 3 partitions, and no more than that has to move.")
    if nums["revoked_eager"] != want["revoked_eager"]:
        return wrong("revoked_eager: with the eager protocol EVERY member gives up ALL its partitions "
                     "before it rejoins (the stop-the-world part), whether or not they move.")
    if nums["revoked_cooperative"] != want["revoked_cooperative"]:
        if nums["revoked_cooperative"] == want["revoked_eager"]:
            return wrong("revoked_cooperative: cooperative-sticky does not revoke everything; members "
                         "keep consuming what stays and give up only what moves.")
        return wrong("revoked_cooperative: cooperative-sticky aims for sticky's target and revokes only "
                     "the partitions that move to d.")
    return right("range moves twice as many partitions as needed; sticky moves the minimum; "
                 "cooperative-sticky also stops only those partitions, over two rebalance rounds.")
