"""Lab 10's exercise checkers: each accepts a right answer and gives a specific hint on a wrong one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import lab10_checks as l10  # noqa: E402


def _unfinished(*args):
    raise NotImplementedError


# -- Exercise 1: fenced brokers ---------------------------------------------------------------

def test_fenced_brokers_right():
    assert l10.check_fenced_brokers(l10.fenced_brokers_reference).ok is True
    # >= instead of > is fine: no case sits exactly on the boundary
    assert l10.check_fenced_brokers(
        lambda last, now, interval, timeout: [b for b, t in last.items() if now - t >= timeout]).ok is True


def test_fenced_brokers_unfinished():
    fb = l10.check_fenced_brokers(_unfinished)
    assert fb.ok is None and "Not answered" in fb.message


@pytest.mark.parametrize("fn, hint", [
    (lambda last, now, interval, timeout: {b for b, t in last.items() if now - t > interval}, "single missed heartbeat"),
    (lambda last, now, interval, timeout: {b for b, t in last.items() if now - t <= timeout}, "still alive"),
    (lambda last, now, interval, timeout: 3, "set of broker ids"),
    (lambda last, now, interval, timeout: {b for b, t in last.items() if now - t > timeout and b != 1},
     "now_ms - its last heartbeat"),
    (lambda last, now, interval, timeout: 1 / 0, "ZeroDivisionError"),
])
def test_fenced_brokers_wrong(fn, hint):
    fb = l10.check_fenced_brokers(fn)
    assert fb.ok is False and hint in fb.message


# -- Exercise 2: quorum arithmetic ------------------------------------------------------------

def test_quorum_sizes_right():
    assert l10.check_quorum_sizes(l10.quorum_sizes_reference).ok is True
    assert l10.quorum_sizes_reference(3) == (2, 1) and l10.quorum_sizes_reference(5) == (3, 2)
    assert l10.quorum_sizes_reference(4) == (3, 1)


def test_quorum_sizes_unfinished():
    assert l10.check_quorum_sizes(_unfinished).ok is None


@pytest.mark.parametrize("fn, hint", [
    (lambda n: (n / 2 + 1, n - (n / 2 + 1)), "integer division"),
    (lambda n: ((n + 1) // 2, n - (n + 1) // 2), "exactly half is not a majority"),
    (lambda n: (n // 2 + 1, n // 2 + 1), "may FAIL"),
    (lambda n: (n // 2 + 1, n // 2), "An even number of voters"),
    (lambda n: n // 2 + 1, "a pair"),
    (lambda n: (n, 0), "n // 2 + 1"),
])
def test_quorum_sizes_wrong(fn, hint):
    fb = l10.check_quorum_sizes(fn)
    assert fb.ok is False and hint in fb.message


# -- Exercise 3: the vote rule ----------------------------------------------------------------

def test_grants_vote_right():
    assert l10.check_grants_vote(l10.grants_vote_reference).ok is True


def test_grants_vote_unfinished():
    assert l10.check_grants_vote(_unfinished).ok is None


def _offsets_only(c, v):
    if c["epoch"] < v["epoch"]:
        return False
    if c["epoch"] == v["epoch"] and v["voted_for"] is not None:
        return v["voted_for"] == c["id"]
    return c["end_offset"] >= v["end_offset"]


def _strict(c, v):
    if c["epoch"] < v["epoch"]:
        return False
    if c["epoch"] == v["epoch"] and v["voted_for"] is not None:
        return v["voted_for"] == c["id"]
    return (c["last_epoch"], c["end_offset"]) > (v["last_epoch"], v["end_offset"])


def _ignores_votes(c, v):
    return c["epoch"] >= v["epoch"] and (c["last_epoch"], c["end_offset"]) >= (v["last_epoch"], v["end_offset"])


def _ignores_epoch(c, v):
    if c["epoch"] == v["epoch"] and v["voted_for"] is not None:
        return v["voted_for"] == c["id"]
    return (c["last_epoch"], c["end_offset"]) >= (v["last_epoch"], v["end_offset"])


def _keeps_old_vote(c, v):
    if c["epoch"] < v["epoch"]:
        return False
    if v["voted_for"] is not None:
        return v["voted_for"] == c["id"]
    return (c["last_epoch"], c["end_offset"]) >= (v["last_epoch"], v["end_offset"])


@pytest.mark.parametrize("fn, hint", [
    (_offsets_only, "compare the last epochs FIRST"),
    (_strict, ">=, not >"),
    (_ignores_votes, "one vote per epoch"),
    (_ignores_epoch, "older than the one the voter already knows"),
    (_keeps_old_vote, "free to vote again"),
    (lambda c, v: "yes", "True or False"),
    (lambda c, v: False, "newer epoch with a log at least as up to date"),
])
def test_grants_vote_wrong(fn, hint):
    fb = l10.check_grants_vote(fn)
    assert fb.ok is False and hint in fb.message
