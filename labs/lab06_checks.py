"""Checkers and reference functions for lab 06 (Exactly-once).

A partition's log in exercises 2 and 3 is a list of entries in offset order, each a dict:

    {"offset": 0, "pid": 7, "value": "o1-a"}      a record of producer 7's transaction
    {"offset": 1, "pid": 7, "marker": "COMMIT"}   producer 7's transaction ends (COMMIT or ABORT)
    {"offset": 2, "pid": None, "value": "plain"}  a record written outside any transaction
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from checkers import Feedback, call_learner, right, wrong

# -- Exercise 1: the broker's sequence check ----------------------------------------------

REMEMBERED_BATCHES = 5  # the leader keeps the last 5 batches of each producer id


def sequence_verdict_reference(seen: Mapping[int, tuple[int, int]], producer_id: int, epoch: int,
                               sequence: int) -> str:
    """What the partition leader does with a one-record batch (producer_id, epoch, sequence).

    `seen` maps each producer id the partition knows to (epoch, last sequence appended).
    Returns "append", "duplicate", "out_of_order" or "fenced".
    """
    if producer_id not in seen:
        return "append"  # a producer id never seen (or expired): accepted at any sequence
    known_epoch, last = seen[producer_id]
    if epoch < known_epoch:
        return "fenced"
    if epoch > known_epoch:
        return "append" if sequence == 0 else "out_of_order"
    if sequence == last + 1:
        return "append"
    if last - REMEMBERED_BATCHES < sequence <= last:
        return "duplicate"
    return "out_of_order"


SEQ_SEEN = {7: (0, 4), 8: (0, 10), 9: (2, 3)}
SEQ_CASES: list[tuple[int, int, int]] = [
    (7, 0, 5),    # the next one
    (7, 0, 4),    # a retry of the last batch
    (7, 0, 0),    # a retry of the oldest of the last 5
    (7, 0, 7),    # a gap: 5 and 6 are missing
    (8, 0, 3),    # older than the last 5 batches: the broker cannot tell, so out of order
    (9, 3, 0),    # a new epoch starts again at 0
    (9, 3, 4),    # a new epoch must start at 0
    (9, 1, 4),    # an older epoch: a zombie
    (5, 0, 0),    # a producer id the partition has never seen
    (6, 0, 42),   # never seen, and not at 0: accepted since Kafka 2.5
]

_VERDICTS = ("append", "duplicate", "out_of_order", "fenced")


def check_sequence_verdict(fn: Callable[[dict[int, tuple[int, int]], int, int, int], Any]) -> Feedback:
    """Exercise 1: sequence_verdict(seen, producer_id, epoch, sequence) -> str."""
    for pid, epoch, seq in SEQ_CASES:
        done, got = call_learner(fn, dict(SEQ_SEEN), pid, epoch, seq)
        if not done:
            return got
        want = sequence_verdict_reference(SEQ_SEEN, pid, epoch, seq)
        if got == want:
            continue
        case = (f"sequence_verdict(seen={SEQ_SEEN}, producer_id={pid}, epoch={epoch}, sequence={seq}) "
                f"returned {got!r}, expected {want!r}")
        if got not in _VERDICTS:
            return wrong(f"{case}: return one of {', '.join(repr(v) for v in _VERDICTS)}.")
        known = SEQ_SEEN.get(pid)
        if known is None:
            return wrong(f"{case}: the partition has no state for this producer id, so there is nothing to "
                         "compare with. Since Kafka 2.5 (KIP-360) the leader accepts it at any sequence — its "
                         "earlier batches may have been removed by retention.")
        known_epoch, last = known
        if epoch < known_epoch:
            return wrong(f"{case}: the partition has already seen epoch {known_epoch} of this producer id; an "
                         "older epoch is a zombie and is refused (INVALID_PRODUCER_EPOCH), whatever its sequence.")
        if epoch > known_epoch:
            return wrong(f"{case}: a new epoch restarts the sequence numbers, so its first batch must have "
                         "sequence 0; anything else is out of order.")
        if seq <= last - REMEMBERED_BATCHES and got == "duplicate":
            return wrong(f"{case}: the leader remembers only the last {REMEMBERED_BATCHES} batches of each "
                         "producer (the producer never has more than 5 in flight). A sequence older than those "
                         "cannot be checked, so it is OUT_OF_ORDER_SEQUENCE_NUMBER, not a duplicate — the "
                         "simple rule 'sequence <= last is a duplicate' is not what Kafka does.")
        if seq > last + 1:
            return wrong(f"{case}: the last sequence was {last}, so {seq} leaves a gap: batches in between are "
                         "missing. The leader refuses it rather than let a hole into the log.")
        if last - REMEMBERED_BATCHES < seq <= last:
            return wrong(f"{case}: sequence {seq} is among the last {REMEMBERED_BATCHES} the leader appended for "
                         "this producer: it is a retry of a batch already in the log. The leader answers with the "
                         "original offsets and appends nothing.")
        return wrong(f"{case}: same epoch, so the batch must continue at last + 1 = {last + 1}.")
    return right("that is the leader's check (kafkalab/broker/producer_state.py). A duplicate is not an "
                 "error: the producer gets the offsets of the copy already in the log.")


# -- Exercise 2: the last stable offset ----------------------------------------------------

def _below(log: Sequence[Mapping[str, Any]], high_watermark: int) -> list[Mapping[str, Any]]:
    return [e for e in log if e["offset"] < high_watermark]


def last_stable_offset_reference(log: Sequence[Mapping[str, Any]], high_watermark: int) -> int:
    """The first offset of the earliest transaction still open below the HW, else the HW."""
    open_first: dict[Any, int] = {}
    for e in _below(log, high_watermark):
        pid = e["pid"]
        if pid is None:
            continue
        if "marker" in e:
            open_first.pop(pid, None)
        else:
            open_first.setdefault(pid, e["offset"])
    return min([*open_first.values(), high_watermark])


def _aborted_offsets(log: Sequence[Mapping[str, Any]]) -> set[int]:
    pending: dict[Any, list[int]] = {}
    aborted: set[int] = set()
    for e in log:
        pid = e["pid"]
        if pid is None:
            continue
        if "marker" in e:
            if e["marker"] == "ABORT":
                aborted |= set(pending.get(pid, []))
            pending.pop(pid, None)
        else:
            pending.setdefault(pid, []).append(e["offset"])
    return aborted


def read_committed_reference(log: Sequence[Mapping[str, Any]], high_watermark: int) -> list[str]:
    """What a read_committed consumer returns: values below the LSO, not aborted, no markers."""
    lso = last_stable_offset_reference(log, high_watermark)
    aborted = _aborted_offsets(log)
    return [e["value"] for e in log if e["offset"] < lso and "marker" not in e and e["offset"] not in aborted]


def _log(*entries: tuple[Any, str]) -> list[dict[str, Any]]:
    """Build a log from (pid, value) pairs; a value "COMMIT"/"ABORT" with a pid is a marker."""
    out: list[dict[str, Any]] = []
    for offset, (pid, v) in enumerate(entries):
        if pid is not None and v in ("COMMIT", "ABORT"):
            out.append({"offset": offset, "pid": pid, "marker": v})
        else:
            out.append({"offset": offset, "pid": pid, "value": v})
    return out


TXN_CASES: list[tuple[str, list[dict[str, Any]], int]] = [
    ("no transactions", _log((None, "a"), (None, "b"), (None, "c")), 3),
    ("a committed transaction", _log((None, "a"), (7, "t1"), (7, "t2"), (7, "COMMIT")), 4),
    ("an aborted transaction, then an open one",
     _log((7, "t1"), (7, "ABORT"), (None, "b"), (8, "u1"), (None, "c")), 5),
    ("an open transaction, then plain records",
     _log((None, "a"), (7, "t1"), (None, "b"), (None, "c")), 4),
    ("two producers, the second still open",
     _log((7, "x1"), (8, "y1"), (7, "x2"), (7, "COMMIT"), (8, "y2"), (None, "p")), 6),
    ("two open transactions",
     _log((None, "a"), (8, "y1"), (7, "x1"), (8, "y2"), (7, "x2")), 5),
    ("committed, then aborted, then open, one producer",
     _log((7, "t1"), (7, "COMMIT"), (7, "t2"), (7, "ABORT"), (7, "t3"), (None, "p")), 6),
    ("the open transaction starts above the high watermark",
     _log((None, "a"), (None, "b"), (None, "c"), (7, "t1"), (None, "d")), 2),
    ("a marker below, records above the high watermark",
     _log((7, "t1"), (7, "COMMIT"), (None, "a"), (None, "b")), 3),
    ("an aborted transaction", _log((7, "t1"), (7, "ABORT"), (None, "b")), 3),
]


def _open_firsts(log: Sequence[Mapping[str, Any]], high_watermark: int) -> set[int]:
    """The first offset of every transaction still open below the HW."""
    first: dict[Any, int] = {}
    for e in _below(log, high_watermark):
        if e["pid"] is not None:
            if "marker" in e:
                first.pop(e["pid"], None)
            else:
                first.setdefault(e["pid"], e["offset"])
    return set(first.values())


def _uncommitted_view(log: Sequence[Mapping[str, Any]], high_watermark: int) -> list[Any]:
    return [e["value"] for e in _below(log, high_watermark) if "marker" not in e]


def check_last_stable_offset(fn: Callable[[list[dict[str, Any]], int], Any]) -> Feedback:
    """Exercise 2: last_stable_offset(log, high_watermark) -> int."""
    for name, log, hw in TXN_CASES:
        done, got = call_learner(fn, [dict(e) for e in log], hw)
        if not done:
            return got
        want = last_stable_offset_reference(log, hw)
        if got == want:
            continue
        case = f"{name}: last_stable_offset({log}, high_watermark={hw}) returned {got!r}, expected {want}"
        firsts_open = _open_firsts(log, hw)
        if not isinstance(got, int):
            return wrong(f"{case}: return an offset (an int).")
        if got == hw and want < hw:
            return wrong(f"{case}: a transaction that has no COMMIT or ABORT marker yet is still open; the LSO "
                         "stops at its first record, even though later records are below the HW.")
        if got == len(log) and hw < len(log):
            return wrong(f"{case}: the LSO never passes the high watermark: records above the HW are not "
                         "committed by the replicas yet, transactional or not.")
        if got > hw:
            return wrong(f"{case}: the LSO is at most the high watermark.")
        if want < hw and got > want and got in firsts_open:
            return wrong(f"{case}: with several transactions open, the LSO is the first offset of the "
                         "EARLIEST one: everything from there on may still be undone.")
        if want < hw and got == want + 1:
            return wrong(f"{case}: the LSO is the offset of the open transaction's first record itself "
                         "(exclusive bound, like the HW): that record is not stable yet.")
        return wrong(f"{case}: the LSO is the first offset of the earliest transaction still open (no marker "
                     "from its producer yet) below the HW; if there is none, the HW.")
    return right("LSO = first offset of the earliest open transaction, or the HW. A read_committed consumer "
                 "reads up to it, and ListOffsets(latest) with read_committed returns it.")


# -- Exercise 3: what a read_committed consumer sees ----------------------------------------

def check_read_committed(fn: Callable[[list[dict[str, Any]], int], Any]) -> Feedback:
    """Exercise 3: read_committed(log, high_watermark) -> list of values, in offset order."""
    for name, log, hw in TXN_CASES:
        done, got = call_learner(fn, [dict(e) for e in log], hw)
        if not done:
            return got
        want = read_committed_reference(log, hw)
        try:
            got = list(got)
        except TypeError:
            return wrong(f"return a list of values, not {got!r}.")
        if got == want:
            continue
        case = f"{name}: read_committed({log}, high_watermark={hw}) returned {got!r}, expected {want!r}"
        if any(v in ("COMMIT", "ABORT") for v in got) or any(isinstance(v, dict) for v in got):
            return wrong(f"{case}: markers are control records: they take an offset but the consumer never "
                         "hands them to the application. Return only the data records' values.")
        if sorted(got, key=str) == sorted(want, key=str):
            return wrong(f"{case}: keep the log's (offset) order.")
        if got == _uncommitted_view(log, hw):
            return wrong(f"{case}: that is what read_uncommitted returns. read_committed stops at the last "
                         "stable offset and drops the records of aborted transactions.")
        aborted = _aborted_offsets(log)
        aborted_values = {e["value"] for e in log if e["offset"] in aborted}
        if set(got) & aborted_values:
            return wrong(f"{case}: the records of a transaction that ended with an ABORT marker are in the log "
                         "but hidden from read_committed consumers (the fetch response lists the aborted "
                         "transactions, from the .txnindex).")
        lso = last_stable_offset_reference(log, hw)
        beyond = {e["value"] for e in log if e["offset"] >= lso and "marker" not in e}
        if set(got) & beyond:
            return wrong(f"{case}: nothing at or above the LSO ({lso}) is returned — not even non-transactional "
                         "records: the consumer reads the log in order and cannot skip past a transaction "
                         "that may still commit.")
        plain = {e["value"] for e in log if e["pid"] is None and e["offset"] < lso}
        if plain - set(got):
            return wrong(f"{case}: records written outside any transaction are committed as soon as they "
                         "are below the LSO: read_committed returns them too.")
        return wrong(f"{case}: return the data records below the LSO whose transaction did not abort.")
    return right("read_committed = the data records below the LSO, minus aborted transactions. That is "
                 "the consumer half of exactly-once.")
