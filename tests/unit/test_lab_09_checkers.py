"""Lab 09's exercise checkers: each accepts a right answer, reports an unfinished stub as not
answered, and gives a specific hint on typical wrong answers."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import lab09_checks as l09  # noqa: E402


def _unfinished(*args):
    raise NotImplementedError


# -- Exercise 1: a tiny history checker ------------------------------------------------------

def test_tiny_checker_right():
    def tiny_check(sent, read):
        counts = Counter(read)
        return {"lost": [r for r, s in sent.items() if s == "acked" and r not in counts],
                "duplicated": [r for r, n in counts.items() if n > 1]}
    assert l09.check_tiny_checker(tiny_check).ok is True
    assert l09.check_tiny_checker(l09.tiny_check_reference).ok is True


def test_tiny_checker_unfinished():
    assert l09.check_tiny_checker(_unfinished).ok is None


@pytest.mark.parametrize("answer, hint", [
    # every record never read counts as lost, failed sends included
    (lambda sent, read: {"lost": set(sent) - set(read),
                         "duplicated": {r for r in read if read.count(r) > 1}}, "FAILED"),
    # every record read is "duplicated"
    (lambda sent, read: {"lost": {r for r, s in sent.items() if s == "acked" and r not in read},
                         "duplicated": set(read)}, "MORE than once"),
    # exactly twice only
    (lambda sent, read: {"lost": {r for r, s in sent.items() if s == "acked" and r not in read},
                         "duplicated": {r for r in read if read.count(r) == 2}}, "three times"),
    (lambda sent, read: ["a"], "keys 'lost' and 'duplicated'"),
])
def test_tiny_checker_wrong(answer, hint):
    fb = l09.check_tiny_checker(answer)
    assert fb.ok is False and hint in fb.message, fb.message


# -- Exercise 2: can an acknowledged record be lost? -------------------------------------------

def test_can_lose_acked_right():
    def can_lose(acks, rf, min_isr, unclean):
        if acks != "all":
            return True
        if min_isr > rf:
            return False
        return min_isr < 2 or unclean
    assert l09.check_can_lose_acked(can_lose).ok is True


def test_can_lose_acked_unfinished():
    assert l09.check_can_lose_acked(_unfinished).ok is None


@pytest.mark.parametrize("answer, hint", [
    # "min.insync.replicas=2 protects acks=1 too"
    (lambda acks, rf, m, u: (m < 2 or u) and m <= rf, "only applies to acks=all"),
    # "acks=all is always safe"
    (lambda acks, rf, m, u: acks != "all", "leader alone"),
    # forgets unclean election
    (lambda acks, rf, m, u: acks != "all" or (m < 2 and m <= rf), "out-of-sync"),
    # "min.insync.replicas > RF is dangerous"
    (lambda acks, rf, m, u: acks != "all" or m < 2 or u or m > rf, "refuses every acks=all write"),
    (lambda acks, rf, m, u: "yes", "True or False"),
])
def test_can_lose_acked_wrong(answer, hint):
    fb = l09.check_can_lose_acked(answer)
    assert fb.ok is False and hint in fb.message, fb.message


# -- Exercise 3: where the commit goes -------------------------------------------------------

def test_after_crash_right():
    def after_crash(processed, committed, end):
        again = range(committed, end)
        return {"twice": [o for o in processed if o in again],
                "never": [o for o in range(end) if o not in processed and o not in again]}
    assert l09.check_after_crash(after_crash).ok is True
    assert l09.after_crash_reference(range(71), 50, 100) == {"twice": list(range(50, 71)), "never": []}
    assert l09.after_crash_reference(range(10), 20, 40) == {"twice": [], "never": list(range(10, 20))}


def test_after_crash_unfinished():
    assert l09.check_after_crash(_unfinished).ok is None


@pytest.mark.parametrize("answer, hint", [
    # the committed offset taken as the last processed one
    (lambda p, c, e: l09.after_crash_reference(p, c + 1, e), "NEXT offset"),
    # swapped
    (lambda p, c, e: {"twice": l09.after_crash_reference(p, c, e)["never"],
                      "never": l09.after_crash_reference(p, c, e)["twice"]}, "swapped"),
    # only knows about duplicates
    (lambda p, c, e: {"twice": l09.after_crash_reference(p, c, e)["twice"], "never": []}, "AHEAD"),
    # only knows about skips
    (lambda p, c, e: {"twice": [], "never": l09.after_crash_reference(p, c, e)["never"]}, "re-reads"),
    (lambda p, c, e: (1, 2), "keys 'twice' and 'never'"),
])
def test_after_crash_wrong(answer, hint):
    fb = l09.check_after_crash(answer)
    assert fb.ok is False and hint in fb.message, fb.message
