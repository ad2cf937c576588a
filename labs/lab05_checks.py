"""Checkers and reference functions for lab 05 (Replication)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from checkers import Feedback, call_learner, right, wrong


def high_watermark_reference(leos: Mapping[int, int], isr: Iterable[int]) -> int:
    """The leader's high watermark: the smallest log end offset among the in-sync replicas."""
    return min(leos[b] for b in isr)


HW_CASES: list[tuple[dict[int, int], list[int]]] = [
    ({1: 10, 2: 10, 3: 10}, [1, 2, 3]),
    ({1: 100, 2: 98, 3: 100}, [1, 2, 3]),
    ({1: 100, 2: 97, 3: 95}, [1, 2]),       # 3 lags and is out of the ISR: it does not hold HW back
    ({1: 7, 2: 3, 3: 0}, [1]),              # ISR is only the leader
    ({2: 50, 3: 42, 1: 49}, [2, 1, 3]),
]


def check_high_watermark(fn: Callable[[Mapping[int, int], list[int]], int]) -> Feedback:
    """Exercise 1: high_watermark(leos, isr) -> int."""
    for leos, isr in HW_CASES:
        done, got = call_learner(fn, dict(leos), list(isr))
        if not done:
            return got
        want = high_watermark_reference(leos, isr)
        if got == want:
            continue
        case = f"high_watermark({leos}, isr={isr}) returned {got!r}, expected {want}"
        if got == min(leos.values()):
            return wrong(f"{case}: only in-sync replicas count. A replica outside the ISR has been "
                         "dropped precisely so that it cannot hold the high watermark back.")
        if got == max(leos[b] for b in isr) or got == max(leos.values()):
            return wrong(f"{case}: a record is committed only once EVERY in-sync replica has it, so take "
                         "the smallest LEO in the ISR, not the largest.")
        if got == want - 1:
            return wrong(f"{case}: the HW, like the LEO, is the NEXT offset (exclusive): consumers may read "
                         "offsets below it. No -1.")
        return wrong(f"{case}: the HW is the smallest log end offset among the ISR members.")
    return right("HW = min(LEO over the ISR). Consumers read below it; acks=all waits for it to pass "
                 "your record. (Since Kafka 3.7 the leader also holds it still while the ISR is smaller "
                 "than min.insync.replicas, as section 2 showed.)")


def eligible_leaders_reference(replicas: Iterable[int], isr: Iterable[int], alive: Iterable[int],
                               unclean: bool) -> set[int]:
    """Who the controller may pick as the new leader."""
    alive_set = set(alive)
    clean = {b for b in isr if b in alive_set}
    if clean:
        return clean
    if unclean:
        return {b for b in replicas if b in alive_set}
    return set()


LEADER_CASES: list[tuple[list[int], list[int], list[int], bool]] = [
    ([1, 2, 3], [1, 2, 3], [2, 3], False),
    ([1, 2, 3], [1, 2], [2, 3], False),      # 3 is alive but out of sync
    ([1, 2, 3], [1], [2, 3], False),         # only the dead leader was in sync: offline
    ([1, 2, 3], [1], [2, 3], True),          # unclean: any live replica, data may be lost
    ([1, 2, 3], [1, 2], [2, 3], True),       # unclean allowed, but a clean choice exists
    ([1, 2, 3], [1, 2, 3], [4, 2], False),   # broker 4 is alive but holds no replica
]


def check_eligible_leaders(fn: Callable[[list[int], list[int], list[int], bool], Any]) -> Feedback:
    """Exercise 2: eligible_leaders(replicas, isr, alive, unclean) -> set of broker ids."""
    for replicas, isr, alive, unclean in LEADER_CASES:
        done, got = call_learner(fn, list(replicas), list(isr), list(alive), unclean)
        if not done:
            return got
        try:
            got = set(got)
        except TypeError:
            return wrong(f"return a set of broker ids, not {got!r}.")
        want = eligible_leaders_reference(replicas, isr, alive, unclean)
        if got == want:
            continue
        case = (f"eligible_leaders(replicas={replicas}, isr={isr}, alive={alive}, unclean={unclean}) "
                f"returned {got}, expected {want}")
        if got - set(alive):
            return wrong(f"{case}: a broker that is down cannot lead.")
        if got - set(replicas):
            return wrong(f"{case}: only a broker that holds a replica of the partition can lead it.")
        if not want:
            return wrong(f"{case}: no live replica is in sync and unclean election is off, so nobody "
                         "may lead: the partition goes offline (leader -1) until an ISR member returns.")
        if not unclean and got - set(isr):
            return wrong(f"{case}: with unclean.leader.election.enable=false only an in-sync replica may "
                         "lead; an out-of-sync one would silently drop committed records.")
        if unclean and want & set(isr) and got - want:
            return wrong(f"{case}: even with unclean election on, Kafka prefers the ISR; it only "
                         "falls back to an out-of-sync replica when no in-sync replica is alive.")
        if unclean and not want & set(isr):
            return wrong(f"{case}: with unclean election on and no live in-sync replica, any live "
                         "replica may lead (and the records only the old leader had are lost).")
        return wrong(f"{case}: the live members of the ISR are the candidates.")
    return right("clean elections pick only from the live ISR; unclean ones trade lost records for "
                 "availability.")
