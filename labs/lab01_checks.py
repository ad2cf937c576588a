"""Checkers and reference functions for lab 01 (The log)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from checkers import Feedback, call_learner, not_answered, right, wrong


def segment_for_reference(offset: int, base_offsets: Sequence[int]) -> int | None:
    """The base offset of the segment holding `offset`: the largest base <= offset (None if the
    offset is below the first segment, i.e. already deleted)."""
    found = None
    for base in sorted(base_offsets):
        if base <= offset:
            found = base
        else:
            break
    return found


# (offset, base offsets) cases: regular segments, the active one, irregular sizes, deleted offsets.
SEGMENT_CASES: list[tuple[int, list[int]]] = [
    (0, [0, 12, 24, 36, 48]),
    (7, [0, 12, 24, 36, 48]),
    (12, [0, 12, 24, 36, 48]),
    (23, [0, 12, 24, 36, 48]),
    (59, [0, 12, 24, 36, 48]),
    (1000, [0, 12, 24, 36, 48]),
    (5, [0, 3, 40, 41]),
    (40, [0, 3, 40, 41]),
    (30, [24, 36, 48]),
    (5, [24, 36, 48]),
]


def check_segment_for(fn: Callable[[int, Sequence[int]], int | None]) -> Feedback:
    """Exercise 1: segment_for(offset, base_offsets) -> base offset of the segment holding it."""
    for offset, bases in SEGMENT_CASES:
        done, got = call_learner(fn, offset, list(bases))
        if not done:
            return got
        want = segment_for_reference(offset, bases)
        if got == want:
            continue
        case = f"segment_for({offset}, {bases}) returned {got!r}, expected {want!r}"
        if want is None:
            return wrong(f"{case}: offset {offset} is below the first segment (retention deleted it), "
                         "so no segment holds it; return None.")
        if offset in bases and got is not None and got < offset:
            return wrong(f"{case}: a segment's base offset is its FIRST offset, so offset {offset} "
                         "is the first record of the segment named after it (use <=, not <).")
        if got is not None and got > offset:
            return wrong(f"{case}: the segment holding an offset starts at or before it; you picked "
                         "the next segment.")
        if offset >= max(bases):
            return wrong(f"{case}: offsets from the last base offset on are in the last (active) segment.")
        if bases == [0, 3, 40, 41]:
            return wrong(f"{case}: segments need not all hold the same number of records (batches "
                         "differ in size, and a roll can happen at any time): search the base offsets, "
                         "don't divide by a segment length.")
        return wrong(f"{case}: pick the largest base offset that is <= the offset.")
    return right("that is the lookup the broker does first: which segment (binary search over base "
                 "offsets), then where in it (the sparse .index).")


def log_start_after_size_retention(segment_sizes: Sequence[tuple[int, int]], retention_bytes: int,
                                   log_end_offset: int | None = None) -> int:
    """Kafka's rule for retention.bytes over [(base_offset, size_bytes), ...], oldest first, the last
    being the active segment: delete the oldest while the log stays at least retention_bytes.
    The active segment is no exception (Kafka rolls a new, empty one first): if it goes too, the
    log starts at its log end offset, which must then be given."""
    excess = sum(size for _, size in segment_sizes) - retention_bytes
    start = segment_sizes[0][0]
    for i, (_, size) in enumerate(segment_sizes):
        if excess < 0 or excess - size < 0 or size == 0:
            break
        excess -= size
        if i + 1 < len(segment_sizes):
            start = segment_sizes[i + 1][0]
        elif log_end_offset is None:
            raise ValueError("every segment goes, the active one too: pass log_end_offset")
        else:
            start = log_end_offset
    return start


def check_size_retention_prediction(answer: Any, segment_sizes: Sequence[tuple[int, int]],
                                    retention_bytes: int) -> Feedback:
    """Exercise 2: predict the log start offset once retention.bytes has run."""
    if answer is None:
        return not_answered()
    try:
        answer = int(answer)
    except (TypeError, ValueError):
        return wrong("give the log start offset as a whole number.")
    want = log_start_after_size_retention(segment_sizes, retention_bytes)
    bases = [b for b, _ in segment_sizes]
    if answer == want:
        return right(f"log start offset {want}: whole segments went, oldest first, and the log "
                     f"still holds at least retention.bytes={retention_bytes}.")
    if answer not in bases:
        return wrong(f"retention deletes whole segments, so the log start offset is always a "
                     f"segment's base offset: one of {bases}.")
    if answer == bases[-1]:
        return wrong("that would delete every closed segment; but Kafka also stops as soon as deleting "
                     "the next segment would leave less than retention.bytes. Add up the sizes.")
    if answer > want:
        return wrong("too many segments deleted: Kafka deletes a segment only if the log still holds at "
                     "least retention.bytes without it, so a log usually stays a little ABOVE the limit.")
    return wrong("too few segments deleted: while the log minus its oldest segment is still at least "
                 "retention.bytes, that oldest segment goes.")
