"""Checkers and reference functions for lab 13 (Two regions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from checkers import Feedback, call_learner, right, wrong

# -- Exercise 1: translate a group's offset from offset-sync records ------------------------


def translate_reference(syncs: list[tuple[int, int]], group_offset: int) -> int | None:
    """MM2's translation: the newest sync (u, d) with u <= group_offset gives d if the group
    sits exactly at u, else d + 1; None when no sync lies at or below the group's offset."""
    below = [(u, d) for u, d in syncs if u <= group_offset]
    if not below:
        return None
    u, d = max(below)
    return d if u == group_offset else d + 1


TRANSLATE_CASES: list[tuple[list[tuple[int, int]], int]] = [
    ([(0, 0), (101, 101)], 101),         # exactly at a sync
    ([(0, 0), (101, 101)], 150),         # past the newest sync
    ([(0, 0), (101, 101)], 60),          # between two syncs: the older one applies
    ([(0, 0), (101, 101), (202, 202)], 150),
    ([(5, 0), (106, 101)], 140),         # upstream and downstream differ
    ([(5, 0), (106, 101)], 3),           # before the first sync: no translation
    ([(101, 101), (0, 0)], 120),         # not sorted
]


def check_translate(fn: Callable[[list[tuple[int, int]], int], Any]) -> Feedback:
    """Exercise 1: translate(syncs, group_offset) -> downstream offset, or None."""
    for syncs, g in TRANSLATE_CASES:
        done, got = call_learner(fn, list(syncs), g)
        if not done:
            return got
        want = translate_reference(syncs, g)
        if got == want:
            continue
        case = f"translate({syncs}, {g}) returned {got!r}; expected {want!r}"
        if want is None:
            return wrong(f"{case}: no sync lies at or below offset {g}, so MirrorMaker knows nothing "
                         "about where that record is on the target: no checkpoint (None).")
        below = [(u, d) for u, d in syncs if u <= g]
        u, d = max(below)
        if got == d + (g - u):
            return wrong(f"{case}: d + (group offset - u) assumes the offsets advance together on both "
                         "sides. Nothing promises that (a gap, a re-copy after a restart), and a guess too "
                         "far would skip records. Only the sync itself is known: go one past it.")
        if got == d and u != g:
            return wrong(f"{case}: the group sits past the sync's upstream offset {u}, so it has already "
                         f"read that record; resuming at {d} would read it again for nothing. Use {d} + 1.")
        if got == d + 1 and u == g:
            return wrong(f"{case}: the group sits exactly at the sync's upstream offset {u}: that record is "
                         f"the next it would read, and it is at {d} on the target. Resume at {d}, not past it.")
        newest = max(syncs)
        if newest[0] > g and got in (newest[1], newest[1] + 1):
            return wrong(f"{case}: the newest sync lies beyond the group's offset; using it would skip "
                         "records the group never read. Use the newest sync at or below the group offset.")
        return wrong(case + ".")
    return right("That is MirrorMaker 2's OffsetSyncStore.translateDownstream rule: never ahead of the "
                 "group, at most offset.lag.max records behind.")


# -- Exercise 2: the replication policy --------------------------------------------------------


def remote_name_reference(topic: str, source: str, target: str) -> str | None:
    """The name `topic` gets on `target`, or None if the flow must not copy it (it came from there)."""
    origin, sep, _ = topic.partition(".")
    if sep and origin == target:
        return None
    return f"{source}.{topic}"


REMOTE_CASES = [
    ("orders", "west", "east"),
    ("orders", "east", "west"),
    ("west.orders", "east", "west"),      # came from west: never back
    ("east.orders", "west", "east"),
    ("north.orders", "east", "west"),     # from a third region: travels on
    ("western.orders", "east", "west"),   # a prefix, not the source alias
    ("heartbeats", "west", "east"),
]


def check_remote_name(fn: Callable[[str, str, str], Any]) -> Feedback:
    """Exercise 2: remote_name(topic, source, target) -> name on target, or None."""
    for topic, source, target in REMOTE_CASES:
        done, got = call_learner(fn, topic, source, target)
        if not done:
            return got
        want = remote_name_reference(topic, source, target)
        if got == want:
            continue
        case = f"remote_name({topic!r}, {source!r}, {target!r}) returned {got!r}; expected {want!r}"
        if want is None:
            return wrong(f"{case}: {topic!r} was copied from {target!r} in the first place. Copying it back "
                         f"would make {source}.{topic} there, and the other flow would copy that again: a loop.")
        if got is None and topic.startswith(target):
            return wrong(f"{case}: the source alias is what comes before the first '.', not any prefix "
                         f"of the name ({topic!r} did not come from {target!r}).")
        if got is None:
            return wrong(f"{case}: only a topic that came from the target is held back; one from a third "
                         "cluster is copied on like any other.")
        return wrong(f"{case}: a remote topic is named '<source alias>.<topic>'.")
    return right("That is DefaultReplicationPolicy, and the rule that keeps active-active flows from looping.")
