"""Lab 11's exercise checkers: each accepts a right answer and gives a specific hint on a wrong one."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import lab11_checks as l11  # noqa: E402


def _unfinished(*args):
    raise NotImplementedError


# -- Exercise 1: route -----------------------------------------------------------------------

def test_route_right():
    assert l11.check_route(l11.route_reference).ok is True


def test_route_unfinished():
    fb = l11.check_route(_unfinished)
    assert fb.ok is None and "Not answered" in fb.message


def _retry_permanent(kind, attempt, max_attempts):
    if kind == "fatal":
        return "fail"
    return "retry" if attempt < max_attempts else "dlt"


def _unbounded(kind, attempt, max_attempts):
    return {"fatal": "fail", "permanent": "dlt"}.get(kind, "retry")


def _off_by_one(kind, attempt, max_attempts):
    if kind == "transient":
        return "retry" if attempt + 1 < max_attempts else "dlt"
    return l11.route_reference(kind, attempt, max_attempts)


def _fatal_to_dlt(kind, attempt, max_attempts):
    if kind == "transient" and attempt < max_attempts:
        return "retry"
    return "dlt"


@pytest.mark.parametrize("fn, hint", [
    (_retry_permanent, "fails the same way every time"),
    (_unbounded, "bounded"),
    (_off_by_one, "off by one"),
    (_fatal_to_dlt, "fatal error"),
    (lambda kind, attempt, max_attempts: "fail" if kind != "permanent" else "dlt", "no reason to stop"),
    (lambda kind, attempt, max_attempts: "DLT", "one of the strings"),
    (lambda kind, attempt, max_attempts: 1 // 0, "ZeroDivisionError"),
])
def test_route_wrong(fn, hint):
    fb = l11.check_route(fn)
    assert fb.ok is False and hint in fb.message, fb.message


# -- Exercise 2: lag alert -------------------------------------------------------------------

def test_lag_alert_right():
    assert l11.check_lag_alert(l11.lag_alert_reference).ok is True
    assert l11.lag_alert_reference([0, 150, 150, 150, 50], 100, 3) == [False, False, False, True, False]


def test_lag_alert_unfinished():
    assert l11.check_lag_alert(_unfinished).ok is None


def _not_consecutive(samples, threshold, for_samples):
    above, out = 0, []
    for lag in samples:
        above += lag > threshold
        out.append(above >= for_samples)
    return out


@pytest.mark.parametrize("fn, hint", [
    (lambda s, t, n: [x > t for x in s], "IN A ROW"),
    (lambda s, t, n: l11.lag_alert_reference(s, t - 1, n), "not above it"),
    (lambda s, t, n: l11.lag_alert_reference(s, t, n + 1), "not the one after"),
    (lambda s, t, n: l11.lag_alert_reference(s, t, max(1, n - 1)), "off by one"),
    (_not_consecutive, "CONSECUTIVE"),
    (lambda s, t, n: [True] * len(s), "resolves"),
    (lambda s, t, n: [False], "one boolean per sample"),
    (lambda s, t, n: None, "list of booleans"),
])
def test_lag_alert_wrong(fn, hint):
    fb = l11.check_lag_alert(fn)
    assert fb.ok is False and hint in fb.message, fb.message


# -- Exercise 3: partitions needed -------------------------------------------------------------

def test_partitions_needed_right():
    assert l11.check_partitions_needed(l11.partitions_needed_reference).ok is True
    assert l11.partitions_needed_reference(1000, 5000, 250) == 4
    assert l11.partitions_needed_reference(10, 1000, 1000) == 1


def test_partitions_needed_unfinished():
    assert l11.check_partitions_needed(_unfinished).ok is None


@pytest.mark.parametrize("fn, hint", [
    (lambda t, p, c: math.ceil(min(t / p, t / c)), "LARGER"),
    (lambda t, p, c: math.floor(max(t / p, t / c)), "round UP"),
    (lambda t, p, c: math.floor(max(t / p, t / c)) + 1, "floor + 1"),
    (lambda t, p, c: math.ceil(t / p + t / c), "not their sum"),
    (lambda t, p, c: math.ceil(t / p), "only covers the producers"),
    (lambda t, p, c: math.ceil(t / c), "only covers the consumers"),
    (lambda t, p, c: max(t / p, t / c), "whole number"),
])
def test_partitions_needed_wrong(fn, hint):
    fb = l11.check_partitions_needed(fn)
    assert fb.ok is False and hint in fb.message, fb.message
