"""Checkers and reference functions for lab 07 (Storage: segments and compaction)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from checkers import Feedback, call_learner, not_answered, right, wrong

Record = tuple[int, Any, Any]  # (offset, key, value); value None is a tombstone


def compaction_reference(records: Sequence[Record], active_base_offset: int) -> list[Record]:
    """What one cleaning pass keeps (tombstones still inside their delete horizon): every record of
    the active segment (offset >= active_base_offset), and below it only the records that are the
    latest for their key among the records BELOW the active segment: like Kafka's offset map, the
    pass stops where the active segment starts. Offsets never change."""
    latest = {key: offset for offset, key, _ in records if offset < active_base_offset}
    return [(o, k, v) for o, k, v in sorted(records, key=lambda r: r[0])
            if o >= active_base_offset or latest[k] == o]


# (records, active base offset): plain, the active segment, tombstones, gaps, empty.
COMPACTION_CASES: list[tuple[list[Record], int]] = [
    ([(0, "a", "1"), (1, "b", "1"), (2, "a", "2"), (3, "c", "1"), (4, "b", "2"), (5, "a", "3"),
      (6, "d", "1")], 7),
    ([(0, "a", "1"), (1, "b", "1"), (2, "a", "2"), (3, "b", "2"), (4, "c", "1"), (5, "a", "3"),
      (6, "a", "4")], 4),
    ([(0, "x", "1"), (1, "y", "1"), (2, "x", None), (3, "z", "1"), (4, "y", "2")], 5),
    ([(3, "a", "1"), (7, "b", "1"), (9, "a", "2"), (12, "c", "1"), (15, "b", "2"), (16, "c", "2")], 16),
    ([], 0),
]


def _normalize(got: Any) -> list[Record] | None:
    try:
        rows = [tuple(r) for r in got]
    except TypeError:
        return None
    if not all(len(r) == 3 for r in rows):
        return None
    return rows  # type: ignore[return-value]


def check_compaction(fn: Callable[[list[Record], int], Any]) -> Feedback:
    """Exercise 1: compact(records, active_base_offset) -> the (offset, key, value) records kept."""
    for records, active in COMPACTION_CASES:
        done, got = call_learner(fn, list(records), active)
        if not done:
            return got
        want = compaction_reference(records, active)
        rows = _normalize(got)
        case = f"compact({records}, active_base_offset={active})"
        if rows is None:
            return wrong(f"{case} returned {got!r}: return a list of (offset, key, value) tuples.")
        if rows == want:
            continue
        case = f"{case} returned {rows}, expected {want}"
        if sorted(rows) == want:
            return wrong(f"{case}: compaction keeps the log in offset order; it never sorts by key or "
                         "moves a record.")
        if [(k, v) for _, k, v in rows] == [(k, v) for _, k, v in want]:
            return wrong(f"{case}: the right records, but offsets never change: a kept record keeps its "
                         "original offset, and the log simply has gaps where the others were.")
        if any(r not in rows for r in want if r[0] >= active):
            return wrong(f"{case}: the active segment (offsets >= {active}) is never rewritten, so all "
                         "its records stay, even the superseded ones.")
        if any(v is None for _, _, v in want) and not any(v is None for _, _, v in rows):
            return wrong(f"{case}: a tombstone (value None) is the latest record of its key, so it is "
                         "kept (until delete.retention.ms has passed); only the older values go.")
        first = {}
        for o, k, _ in sorted(records):
            first.setdefault(k, o)
        if any(o < active and first[k] == o and (o, k, v) not in want for o, k, v in rows):
            return wrong(f"{case}: keep the LATEST record of each key (the highest offset), not the first.")
        newer_in_active = {k for o, k, _ in records if o >= active}
        if any(r not in rows and r[0] < active and r[1] in newer_in_active for r in want):
            return wrong(f"{case}: a record below the active segment survives unless a later record "
                         "BELOW the active segment has the same key. The cleaner does not read the "
                         "active segment: a newer value there supersedes nothing until its segment "
                         "closes and a later pass runs.")
        if any(r not in want for r in rows):
            return wrong(f"{case}: a record below the active segment survives only if no later record "
                         "below the active segment has the same key.")
        return wrong(f"{case}: keep every record of the active segment, and below it the latest "
                     "record of each key.")
    return right("latest value per key, offsets unchanged (with gaps), per-key order kept, "
                 "active segment untouched: that is a cleaning pass.")


def _readable(horizon: int, cleaner_runs: Sequence[int], read_at: int) -> bool:
    """Readable at read_at unless a pass at or after `horizon` ran by then."""
    return not any(horizon <= t <= read_at for t in cleaner_runs)


def tombstone_readable(delete_retention_ms: int, cleaner_runs: Sequence[int], read_at: int) -> bool:
    """Kafka 3.1+ (KIP-534): the first pass over the tombstone's (closed) segment keeps it and
    stamps horizon = that pass's time + delete.retention.ms into its batch; a later pass at or
    after the horizon removes it. Nothing removes it on a timer."""
    if not cleaner_runs:
        return True
    return _readable(cleaner_runs[0] + delete_retention_ms, cleaner_runs[1:], read_at)


# Everything in ms on one clock. The tombstone's segment closed long before the first pass.
TOMBSTONE_SCENARIOS: dict[str, dict[str, Any]] = {
    "A": {"tombstone_ts": 1_000, "segment_max_ts": 4_000, "delete_retention_ms": 10_000,
          "cleaner_runs": [5_000, 14_500], "read_at": 16_000},
    "B": {"tombstone_ts": 1_000, "segment_max_ts": 4_000, "delete_retention_ms": 10_000,
          "cleaner_runs": [5_000, 16_000], "read_at": 20_000},
    "C": {"tombstone_ts": 1_000, "segment_max_ts": 4_000, "delete_retention_ms": 10_000,
          "cleaner_runs": [5_000, 10_000], "read_at": 30_000},
    "D": {"tombstone_ts": 1_000, "segment_max_ts": 4_000, "delete_retention_ms": 10_000,
          "cleaner_runs": [5_000, 11_500], "read_at": 12_500},
}


def _model(scenarios: Mapping[str, Mapping[str, Any]], rule: Callable[[Mapping[str, Any]], bool]) -> dict:
    return {name: rule(s) for name, s in scenarios.items()}


def tombstone_reference(scenarios: Mapping[str, Mapping[str, Any]] = TOMBSTONE_SCENARIOS) -> dict[str, bool]:
    return _model(scenarios, lambda s: tombstone_readable(s["delete_retention_ms"], s["cleaner_runs"],
                                                          s["read_at"]))


def check_tombstone_predictions(answers: Mapping[str, Any],
                                scenarios: Mapping[str, Mapping[str, Any]] = TOMBSTONE_SCENARIOS) -> Feedback:
    """Exercise 2: for each scenario, is the tombstone still readable at read_at? (True/False)"""
    if answers is None or all(answers.get(name) is None for name in scenarios):
        return not_answered()
    if set(answers) != set(scenarios) or not all(isinstance(answers[n], bool) for n in scenarios):
        return wrong(f"answer True (still readable) or False (gone) for each of {sorted(scenarios)}.")
    want = tombstone_reference(scenarios)
    got = {n: answers[n] for n in scenarios}
    if got == want:
        return right("the first pass stamps the horizon (its own time + delete.retention.ms) into the "
                     "tombstone's batch; the tombstone goes at the first pass at or after the horizon. "
                     "Until then, a reader still sees it.")
    ret = "delete_retention_ms"
    from_segment = _model(scenarios, lambda s: _readable(s["segment_max_ts"] + s[ret], s["cleaner_runs"], s["read_at"]))
    from_tombstone = _model(scenarios, lambda s: _readable(s["tombstone_ts"] + s[ret], s["cleaner_runs"], s["read_at"]))
    timers = [_model(scenarios, lambda s, start=start: s["read_at"] < s[start] + s[ret])
              for start in ("tombstone_ts", "segment_max_ts")]
    timers.append(_model(scenarios, lambda s: s["read_at"] < s["cleaner_runs"][0] + s[ret]))
    if got in timers:
        return wrong("nothing deletes a tombstone on a timer: the horizon only makes it REMOVABLE; "
                     "it disappears at the first cleaning pass at or after the horizon. Look at cleaner_runs.")
    if got == from_tombstone:
        return wrong("the horizon is not counted from the tombstone's own timestamp: the FIRST CLEANING "
                     "pass stamps it into the batch (that pass's time + delete_retention_ms).")
    if got == from_segment:
        return wrong("the horizon is not counted from the segment's newest timestamp (that was Kafka "
                     "before 3.1): the FIRST CLEANING pass stamps it (that pass's time + delete_retention_ms).")
    bad = sorted(n for n in scenarios if got[n] != want[n])
    return wrong(f"scenario(s) {bad}: horizon = the first cleaner run + delete_retention_ms; then ask "
                 "whether a LATER run came at or after the horizon and no later than read_at.")
