"""Checkers for lab 00 (Start here)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers import Feedback, not_answered, right, wrong


def check_segment_file_name(answer: Any, base_offset: int = 0) -> Feedback:
    """Exercise 1: the file name of the segment whose first offset is `base_offset`."""
    if answer is None or answer == "":
        return not_answered()
    if not isinstance(answer, str):
        return wrong(f"give the name as a string, like 'something.log', not a {type(answer).__name__}.")
    expected = f"{base_offset:020d}.log"
    name = answer.strip().rsplit("/", 1)[-1]
    if name == expected:
        return right(f"{expected}: the segment's base offset, zero-padded to 20 digits, plus .log.")
    stem, dot, ext = name.partition(".")
    if not dot or ext != "log":
        if ext in ("index", "timeindex"):
            return wrong(f".{ext} is an index beside the segment; the records themselves are in the .log file.")
        return wrong("the records are in the file ending in .log (the .index and .timeindex files only point into it).")
    if not stem.isdigit():
        return wrong("a segment is named only by digits: the offset of its first record.")
    if len(stem) != 20:
        return wrong(f"your name has {len(stem)} digits; Kafka pads the base offset with zeros to exactly 20 "
                     "digits, so that file names sort in offset order.")
    if int(stem) != base_offset:
        return wrong(f"the name is the offset of the segment's FIRST record; this segment starts at offset {base_offset}.")
    return wrong(f"close, but not exact: expected {len(expected)} characters.")


def check_replica_brokers(answer: Any, replicas: Iterable[int], leader: int) -> Feedback:
    """Exercise 2: the brokers that keep a copy of one partition (its replicas)."""
    if answer is None:
        return not_answered()
    try:
        got = {int(b) for b in answer}
    except (TypeError, ValueError):
        return wrong("give a set of broker ids, like {1, 2}.")
    want = {int(b) for b in replicas}
    if got == want:
        return right(f"brokers {sorted(want)} each hold a full copy; broker {leader} leads, the others follow.")
    if got == {int(leader)}:
        return wrong("that is only the leader. Followers keep a full copy of the log too: "
                     "look at the `replicas` column, not `leader`.")
    extra, missing = got - want, want - got
    if extra:
        return wrong(f"broker(s) {sorted(extra)} hold no copy of this partition: a topic's partitions are "
                     "spread over the brokers, and each one lives only on its `replicas`.")
    return wrong(f"you left out broker(s) {sorted(missing)}: the replication factor says how many copies there are.")


