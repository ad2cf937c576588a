"""Lab 06's exercise checkers: each accepts a right answer, reports an unfinished stub as not
answered, and gives a specific hint on a typical wrong answer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import lab06_checks as l06  # noqa: E402


def _unfinished(*args):
    raise NotImplementedError


# -- Exercise 1: the sequence check ---------------------------------------------------------

def test_sequence_verdict_right():
    def solution(seen, producer_id, epoch, sequence):
        if producer_id not in seen:
            return "append"
        known_epoch, last = seen[producer_id]
        if epoch != known_epoch:
            return "fenced" if epoch < known_epoch else ("append" if sequence == 0 else "out_of_order")
        if sequence == last + 1:
            return "append"
        return "duplicate" if last - 5 < sequence <= last else "out_of_order"
    assert l06.check_sequence_verdict(solution).ok is True
    assert l06.check_sequence_verdict(l06.sequence_verdict_reference).ok is True


def test_sequence_verdict_unfinished():
    assert l06.check_sequence_verdict(_unfinished).ok is None


def _seed_rule(seen, producer_id, epoch, sequence):
    """The deep dive's rule: anything <= last is a duplicate, epochs ignored."""
    last = seen.get(producer_id, (0, -1))[1]
    if sequence <= last:
        return "duplicate"
    return "append" if sequence == last + 1 else "out_of_order"


def _no_epochs(seen, producer_id, epoch, sequence):
    if producer_id not in seen:
        return "append"
    last = seen[producer_id][1]
    if sequence == last + 1:
        return "append"
    return "duplicate" if last - 5 < sequence <= last else "out_of_order"


def _strict_unknown(seen, producer_id, epoch, sequence):
    if producer_id not in seen:
        return "append" if sequence == 0 else "out_of_order"
    return l06.sequence_verdict_reference(seen, producer_id, epoch, sequence)


def _gap_is_fine(seen, producer_id, epoch, sequence):
    v = l06.sequence_verdict_reference(seen, producer_id, epoch, sequence)
    if v == "out_of_order" and producer_id in seen and sequence > seen[producer_id][1]:
        return "append"
    return v


@pytest.mark.parametrize("answer, hint", [
    (_seed_rule, "last 5 batches"),
    (_no_epochs, "new epoch restarts"),
    (_strict_unknown, "KIP-360"),
    (_gap_is_fine, "leaves a gap"),
    (lambda *a: "ok", "return one of"),
    (lambda *a: 1 // 0, "ZeroDivisionError"),
])
def test_sequence_verdict_wrong(answer, hint):
    fb = l06.check_sequence_verdict(answer)
    assert fb.ok is False and hint in fb.message


def test_sequence_verdict_zombie_hint():
    def ignores_old_epochs(seen, producer_id, epoch, sequence):
        if producer_id in seen and epoch < seen[producer_id][0]:
            return "out_of_order"
        return l06.sequence_verdict_reference(seen, producer_id, epoch, sequence)
    fb = l06.check_sequence_verdict(ignores_old_epochs)
    assert fb.ok is False and "zombie" in fb.message


# -- Exercise 2: the last stable offset ------------------------------------------------------

def test_lso_right():
    def solution(log, high_watermark):
        open_first = {}
        for e in log:
            if e["offset"] >= high_watermark or e["pid"] is None:
                continue
            if "marker" in e:
                open_first.pop(e["pid"], None)
            else:
                open_first.setdefault(e["pid"], e["offset"])
        return min([*open_first.values(), high_watermark])
    assert l06.check_last_stable_offset(solution).ok is True
    assert l06.check_last_stable_offset(l06.last_stable_offset_reference).ok is True


def test_lso_unfinished():
    assert l06.check_last_stable_offset(_unfinished).ok is None


def _latest_open(log, high_watermark):
    open_first = {}
    for e in log:
        if e["offset"] >= high_watermark or e["pid"] is None:
            continue
        if "marker" in e:
            open_first.pop(e["pid"], None)
        else:
            open_first.setdefault(e["pid"], e["offset"])
    return max([*open_first.values()], default=high_watermark)


def _no_hw_cap(log, high_watermark):
    return l06.last_stable_offset_reference(log, len(log))


@pytest.mark.parametrize("answer, hint", [
    (lambda log, hw: hw, "still open"),
    (_latest_open, "EARLIEST"),
    (_no_hw_cap, "at most the high watermark"),
    (lambda log, hw: l06.last_stable_offset_reference(log, hw) if hw == len(log) else len(log),
     "never passes the high watermark"),
    (lambda log, hw: l06.last_stable_offset_reference(log, hw) + (l06.last_stable_offset_reference(log, hw) < hw),
     "first record itself"),
    (lambda log, hw: str(hw), "an int"),
])
def test_lso_wrong(answer, hint):
    fb = l06.check_last_stable_offset(answer)
    assert fb.ok is False and hint in fb.message, fb.message


# -- Exercise 3: read_committed ----------------------------------------------------------------

def test_read_committed_right():
    assert l06.check_read_committed(l06.read_committed_reference).ok is True


def test_read_committed_unfinished():
    assert l06.check_read_committed(_unfinished).ok is None


def _uncommitted(log, hw):
    return [e["value"] for e in log if e["offset"] < hw and "marker" not in e]


def _keeps_aborted(log, hw):
    lso = l06.last_stable_offset_reference(log, hw)
    return [e["value"] for e in log if e["offset"] < lso and "marker" not in e]


def _ignores_lso(log, hw):
    aborted = set()
    pending = {}
    for e in log:
        if e["pid"] is None:
            continue
        if "marker" in e:
            if e["marker"] == "ABORT":
                aborted |= set(pending.get(e["pid"], []))
            pending.pop(e["pid"], None)
        else:
            pending.setdefault(e["pid"], []).append(e["offset"])
    still_open = {o for offs in pending.values() for o in offs}
    return [e["value"] for e in log if e["offset"] < hw and "marker" not in e
            and e["offset"] not in aborted and e["offset"] not in still_open]


def _with_markers(log, hw):
    lso = l06.last_stable_offset_reference(log, hw)
    good = set(l06.read_committed_reference(log, hw))
    return [e.get("value", e.get("marker")) for e in log
            if e["offset"] < lso and (e.get("value") in good or "marker" in e)]


def _transactional_only(log, hw):
    return [v for v in l06.read_committed_reference(log, hw)
            if any(e.get("value") == v and e["pid"] is not None for e in log)]


@pytest.mark.parametrize("answer, hint", [
    (_uncommitted, "read_uncommitted"),
    (_keeps_aborted, "ABORT marker"),
    (_ignores_lso, "not even non-transactional"),
    (_with_markers, "control records"),
    (_transactional_only, "outside any transaction"),
    (lambda log, hw: list(reversed(l06.read_committed_reference(log, hw))), "order"),
    (lambda log, hw: 3, "list of values"),
])
def test_read_committed_wrong(answer, hint):
    fb = l06.check_read_committed(answer)
    assert fb.ok is False and hint in fb.message, fb.message
