"""Checkers and reference functions for lab 14 (Queues with share groups)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from checkers import Feedback, call_learner, right, wrong

# -- Exercise 1: one record's life in a share-partition -------------------------------------

EVENTS = ("acquire", "accept", "release", "reject", "expire")


def record_after_reference(events: list[str], delivery_limit: int) -> tuple[str, int]:
    """(state, delivery count) of one record after `events`, as a share-partition keeps it."""
    state, count = "available", 0
    for e in events:
        if state in ("acknowledged", "archived"):
            break  # done: nothing happens to it any more
        if e == "acquire" and state == "available":
            state, count = "acquired", count + 1
        elif state == "acquired" and e == "accept":
            state = "acknowledged"
        elif state == "acquired" and e == "reject":
            state = "archived"
        elif state == "acquired" and e in ("release", "expire"):
            state = "archived" if count >= delivery_limit else "available"
    return state, count


RECORD_CASES: list[tuple[list[str], int]] = [
    (["acquire", "accept"], 5),
    (["acquire", "release", "acquire", "accept"], 5),
    (["acquire", "reject"], 5),
    (["acquire", "expire"], 5),
    (["acquire", "expire", "acquire", "expire", "acquire", "expire"], 3),
    (["acquire", "release", "acquire", "release"], 2),
    (["acquire", "release", "acquire"], 2),
    ([], 5),
    (["acquire", "accept", "acquire"], 5),
    (["acquire", "expire", "acquire", "reject"], 5),
]


def check_record_after(fn: Callable[[list[str], int], Any]) -> Feedback:
    """Exercise 1: record_after(events, delivery_limit) -> (state, delivery_count)."""
    for events, limit in RECORD_CASES:
        done, got = call_learner(fn, list(events), limit)
        if not done:
            return got
        want = record_after_reference(events, limit)
        if isinstance(got, (tuple, list)) and tuple(got) == want:
            continue
        case = f"record_after({events!r}, delivery_limit={limit}) returned {got!r}, expected {want!r}"
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return wrong(f"{case}: return a pair (state, delivery_count), e.g. ('acknowledged', 1).")
        state, count = got
        if state == want[0] and count != want[1]:
            return wrong(f"{case}: the delivery count goes up by one each time the record is *acquired*, "
                         "and only then.")
        if want[0] == "archived" and state == "available":
            return wrong(f"{case}: after its delivery_limit-th delivery a released or expired record is "
                         "archived, never offered again (that is what stops a poison pill).")
        if "expire" in events and want[0] == "available" and state != want[0]:
            return wrong(f"{case}: an expired lock works like a RELEASE: the record is available again.")
        if want[0] in ("acknowledged", "archived") and events[-1] == "acquire":
            return wrong(f"{case}: an acknowledged or archived record is done; a later acquire does not "
                         "touch it.")
        return wrong(f"{case}.")
    return right("ACCEPT and REJECT end a record; RELEASE and an expired lock hand it back until the "
                 "delivery limit archives it.")
