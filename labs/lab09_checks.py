"""Checkers and reference functions for lab 09 (Failure scenarios)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from checkers import Feedback, call_learner, right, wrong

# -- Exercise 1: a tiny history checker ------------------------------------------------------


def tiny_check_reference(sent: Mapping[str, str], read: Iterable[str]) -> dict[str, set[str]]:
    """lost: acknowledged and never read back; duplicated: read back more than once."""
    copies = Counter(read)
    return {"lost": {rid for rid, status in sent.items() if status == "acked" and copies[rid] == 0},
            "duplicated": {rid for rid, n in copies.items() if n > 1}}


TINY_CASES: list[tuple[dict[str, str], list[str]]] = [
    ({"a": "acked", "b": "acked", "c": "acked"}, ["a", "b", "c"]),
    ({"a": "acked", "b": "acked", "c": "acked"}, ["a", "c"]),                      # b lost
    ({"a": "acked", "b": "acked"}, ["a", "b", "b"]),                               # b twice
    ({"a": "acked", "b": "failed", "c": "acked"}, ["a", "c"]),                     # a failed send is not lost
    ({"a": "acked", "b": "failed", "c": "acked"}, ["a", "b", "c"]),                # ... and may be in the log
    ({"a": "acked", "b": "acked", "c": "failed"}, ["b", "b", "b", "c", "c"]),      # a lost, b x3, c x2
    ({"x1": "acked", "x2": "acked", "x3": "acked", "x4": "acked"}, ["x4", "x1", "x1", "x3"]),
]


def _as_set(value: Any) -> set[Any] | None:
    try:
        return set(value)
    except TypeError:
        return None


def check_tiny_checker(fn: Callable[[dict[str, str], list[str]], Any]) -> Feedback:
    """Exercise 1: tiny_check(sent, read) -> {"lost": set of ids, "duplicated": set of ids}."""
    for sent, read in TINY_CASES:
        done, got = call_learner(fn, dict(sent), list(read))
        if not done:
            return got
        if not isinstance(got, Mapping) or not {"lost", "duplicated"} <= set(got):
            return wrong(f"return a dict with the keys 'lost' and 'duplicated', not {got!r}.")
        lost, dup = _as_set(got["lost"]), _as_set(got["duplicated"])
        if lost is None or dup is None:
            return wrong(f"'lost' and 'duplicated' should be sets (or lists) of record ids, got {got!r}.")
        want = tiny_check_reference(sent, read)
        if lost == want["lost"] and dup == want["duplicated"]:
            continue
        case = (f"tiny_check({sent}, {read}) returned lost={sorted(lost)}, duplicated={sorted(dup)}; "
                f"expected lost={sorted(want['lost'])}, duplicated={sorted(want['duplicated'])}")
        never_read = set(sent) - set(read)
        if lost != want["lost"] and lost == never_read:
            return wrong(f"{case}: a record whose send FAILED was never promised to anyone. Only "
                         "acknowledged records can be lost (a failed one may or may not be in the log, "
                         "and both are allowed).")
        if lost != want["lost"] and lost & set(read):
            return wrong(f"{case}: a record that was read back at least once is not lost.")
        if dup != want["duplicated"] and dup == set(read):
            return wrong(f"{case}: 'duplicated' is the ids read MORE than once, not every id read.")
        if dup != want["duplicated"] and dup < want["duplicated"] and dup == {
                rid for rid, n in Counter(read).items() if n == 2}:
            return wrong(f"{case}: a record read three times is duplicated too (count > 1, not == 2).")
        if lost != want["lost"]:
            return wrong(f"{case}: lost = acknowledged ids that never appear in `read`.")
        return wrong(f"{case}: duplicated = ids that appear more than once in `read`.")
    return right("that is the core of kafkalab.workloads.check: compare what the producer was told "
                 "with what a fresh consumer finds in the log.")


# -- Exercise 2: can an acknowledged record be lost? ---------------------------------------


def can_lose_acked_reference(acks: str, replication_factor: int, min_insync_replicas: int,
                             unclean: bool) -> bool:
    """Can a record the producer was told is written be lost when ONE broker dies for good
    (disk and all), with the ISR as small as the settings allow at that moment?"""
    if str(acks) in ("0", "1"):
        return True    # only the leader had it (acks=0: maybe nobody)
    if min_insync_replicas > replication_factor:
        return False   # every acks=all write is refused: nothing was ever acknowledged
    if min_insync_replicas < 2:
        return True    # the ISR may be the leader alone, which then acknowledges alone
    return bool(unclean)  # an out-of-sync replica (without the record) may be elected


LOSS_CASES: list[tuple[str, int, int, bool]] = [
    ("all", 3, 2, False),     # the production setting: safe
    ("1", 3, 2, False),       # min.insync.replicas does nothing for acks=1
    ("all", 3, 1, False),     # acks=all, but the ISR may shrink to the leader alone
    ("all", 3, 2, True),      # unclean election may pick a replica that never had it
    ("0", 3, 2, False),
    ("all", 5, 3, False),
    ("all", 3, 3, False),     # safe, but one broker down stops every write
    ("all", 2, 3, False),     # min.insync.replicas > RF: every write refused, nothing acknowledged
    ("all", 1, 1, False),     # a single copy
    ("1", 1, 1, False),
]


def check_can_lose_acked(fn: Callable[[str, int, int, bool], Any]) -> Feedback:
    """Exercise 2: can_lose_acked(acks, replication_factor, min_insync_replicas, unclean) -> bool."""
    for acks, rf, min_isr, unclean in LOSS_CASES:
        done, got = call_learner(fn, acks, rf, min_isr, unclean)
        if not done:
            return got
        if not isinstance(got, bool):
            return wrong(f"return True or False, not {got!r}.")
        want = can_lose_acked_reference(acks, rf, min_isr, unclean)
        if got == want:
            continue
        case = (f"can_lose_acked(acks={acks!r}, replication_factor={rf}, min_insync_replicas={min_isr}, "
                f"unclean={unclean}) returned {got}, expected {want}")
        if acks in ("0", "1"):
            return wrong(f"{case}: with acks={acks} the leader answers before any follower has the record "
                         "(min.insync.replicas only applies to acks=all), so losing the leader loses it.")
        if min_isr > rf:
            return wrong(f"{case}: min.insync.replicas is larger than the replication factor, so the "
                         "leader refuses every acks=all write (NOT_ENOUGH_REPLICAS). Nothing is ever "
                         "acknowledged, so nothing acknowledged can be lost (the topic is just unusable).")
        if min_isr < 2:
            return wrong(f"{case}: acks=all waits for the current ISR only. With min.insync.replicas=1 "
                         "the ISR may have shrunk to the leader alone, which then acknowledges with a "
                         "single copy.")
        if unclean:
            return wrong(f"{case}: with unclean.leader.election.enable=true, if no in-sync replica is "
                         "left the controller may elect an out-of-sync one that never got the record.")
        return wrong(f"{case}: acks=all with min.insync.replicas >= 2 puts every acknowledged record on "
                     "at least two replicas, and a clean election only picks one of those.")
    return right("acks=all + min.insync.replicas >= 2 (<= RF) + no unclean election is the only "
                 "combination here that never loses an acknowledged record.")


# -- Exercise 3: where the commit goes ----------------------------------------------------


def after_crash_reference(processed: Iterable[int], committed: int, end: int) -> dict[str, list[int]]:
    """The next owner processes [committed, end). Offsets processed before the crash and again
    after are processed twice; offsets processed by neither are never processed."""
    before = set(processed)
    after = set(range(committed, end))
    return {"twice": sorted(before & after), "never": sorted(set(range(end)) - before - after)}


CRASH_CASES: list[tuple[list[int], int, int]] = [
    (list(range(30)), 20, 40),        # committed after each batch of 20, crashed in the second batch
    (list(range(10)), 20, 40),        # committed the batch BEFORE processing it, crashed half-way
    (list(range(20)), 20, 40),        # crashed right after a commit: nothing to redo
    (list(range(71)), 50, 100),       # this lab's worker: processed 0..70, committed 50
    (list(range(5)), 0, 10),          # never committed: everything again
    (list(range(12)), 15, 15),        # committed to the end, processed 0..11: 12..14 skipped
]


def check_after_crash(fn: Callable[[list[int], int, int], Any]) -> Feedback:
    """Exercise 3: after_crash(processed, committed, end) -> {"twice": [...], "never": [...]}."""
    for processed, committed, end in CRASH_CASES:
        done, got = call_learner(fn, list(processed), committed, end)
        if not done:
            return got
        if not isinstance(got, Mapping) or not {"twice", "never"} <= set(got):
            return wrong(f"return a dict with the keys 'twice' and 'never', not {got!r}.")
        twice, never = _as_set(got["twice"]), _as_set(got["never"])
        if twice is None or never is None:
            return wrong(f"'twice' and 'never' should be lists of offsets, got {got!r}.")
        want = after_crash_reference(processed, committed, end)
        if twice == set(want["twice"]) and never == set(want["never"]):
            continue
        span = f"{processed[0]}..{processed[-1]}" if processed else "nothing"
        case = (f"after_crash(processed {span}, committed={committed}, end={end}) returned "
                f"twice={sorted(twice)}, never={sorted(never)}; expected {want}")
        shifted = after_crash_reference(processed, committed + 1, end)
        if twice == set(shifted["twice"]) and never == set(shifted["never"]):
            return wrong(f"{case}: a committed offset is the NEXT offset to read, not the last one "
                         "processed: the new owner starts AT the committed offset.")
        if twice == set(want["never"]) and never == set(want["twice"]):
            return wrong(f"{case}: 'twice' and 'never' are swapped. Committing after processing "
                         "re-does work (twice); committing before processing skips it (never).")
        if want["never"] and not never:
            return wrong(f"{case}: if the commit is AHEAD of what was processed, the new owner starts "
                         "past records nobody processed: those are never processed.")
        if want["twice"] and not twice:
            return wrong(f"{case}: the new owner re-reads from the committed offset, so everything "
                         "processed at or after it before the crash is processed again.")
        return wrong(f"{case}: the new owner processes range(committed, end); compare that with "
                     "what was processed before the crash.")
    return right("commit after processing -> some records twice (at-least-once); commit before "
                 "processing -> some records never (at-most-once).")
