"""The labs' exercise checkers: each accepts a right answer and gives a specific hint on a wrong one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import checkers  # noqa: E402
import lab00_checks as l00  # noqa: E402
import lab01_checks as l01  # noqa: E402
import lab05_checks as l05  # noqa: E402


def _unfinished(*args):
    raise NotImplementedError


# -- shared -------------------------------------------------------------------------------

def test_feedback_renders_and_is_truthy_only_when_right():
    assert str(checkers.right("fine")).startswith("✅") and bool(checkers.right())
    assert str(checkers.wrong("hint")).startswith("❌") and not checkers.wrong("hint")
    assert checkers.not_answered().ok is None and not checkers.not_answered()


def test_reveal_compares_prediction():
    assert checkers.reveal(3, 3, "segments").ok is True
    assert checkers.reveal(2, 3, "segments").ok is False
    fb = checkers.reveal(None, 3, "segments")
    assert fb.ok is None and "3" in fb.message
    assert checkers.reveal({"a": None, "b": None}, {"a": 1, "b": 2}, "outcomes").ok is None
    assert checkers.reveal({"a": 1, "b": None}, {"a": 1, "b": 2}, "outcomes").ok is False


def test_call_learner_reports_exceptions_as_hints():
    ok, fb = checkers.call_learner(lambda x: 1 // x, 0)
    assert not ok and fb.ok is False and "ZeroDivisionError" in fb.message


# -- lab 00 -------------------------------------------------------------------------------

def test_segment_file_name_right():
    assert l00.check_segment_file_name("00000000000000000000.log").ok is True
    assert l00.check_segment_file_name("/tmp/x/broker-1/hello-0/00000000000000000000.log").ok is True
    assert l00.check_segment_file_name("00000000000000000012.log", base_offset=12).ok is True


@pytest.mark.parametrize("answer, hint", [
    (None, "Not answered"),
    ("0.log", "20"),
    ("00000000000000000000.index", "index beside"),
    ("00000000000000000000", ".log"),
    ("00000000000000000001.log", "FIRST record"),
    ("hello-0.log", "digits"),
    (0, "string"),
])
def test_segment_file_name_wrong(answer, hint):
    fb = l00.check_segment_file_name(answer)
    assert fb.ok is not True and hint in fb.message


def test_replica_brokers():
    assert l00.check_replica_brokers({2, 3}, [3, 2], leader=3).ok is True
    assert "only the leader" in l00.check_replica_brokers({3}, [3, 2], leader=3).message
    assert "hold no copy" in l00.check_replica_brokers({1, 2, 3}, [3, 2], leader=3).message
    assert "left out" in l00.check_replica_brokers({2}, [3, 2], leader=3).message
    assert l00.check_replica_brokers(None, [3, 2], leader=3).ok is None
    assert "set of broker ids" in l00.check_replica_brokers("x", [3, 2], leader=3).message


# -- lab 01 -------------------------------------------------------------------------------

def test_segment_for_right():
    def segment_for(offset, bases):
        below = [b for b in bases if b <= offset]
        return max(below) if below else None
    assert l01.check_segment_for(segment_for).ok is True
    assert l01.check_segment_for(l01.segment_for_reference).ok is True


def test_segment_for_wrong_answers_get_specific_hints():
    def strict(offset, bases):  # < instead of <=
        below = [b for b in bases if b < offset]
        return max(below) if below else bases[0]
    assert "use <=" in l01.check_segment_for(strict).message

    def fixed_size(offset, bases):
        return offset // 12 * 12 if offset < 48 else 48
    fb = l01.check_segment_for(fixed_size)
    assert fb.ok is False and "don't divide" in fb.message

    def never_none(offset, bases):
        below = [b for b in bases if b <= offset]
        return max(below) if below else bases[0]
    assert "return None" in l01.check_segment_for(never_none).message

    def next_one(offset, bases):
        above = [b for b in bases if b > offset]
        return min(above) if above else bases[-1]
    assert "next segment" in l01.check_segment_for(next_one).message
    assert l01.check_segment_for(_unfinished).ok is None
    assert "TypeError" in l01.check_segment_for(lambda o, b: o + "x").message


SEGS = [(0, 948), (12, 948), (24, 948), (36, 948), (48, 948)]


def test_size_retention_reference_matches_kafkas_rule():
    assert l01.log_start_after_size_retention(SEGS, 1500) == 36
    assert l01.log_start_after_size_retention(SEGS, 2000) == 24
    assert l01.log_start_after_size_retention(SEGS, 10_000) == 0
    assert l01.log_start_after_size_retention(SEGS, 0) == 48  # the active segment stays


def test_size_retention_prediction():
    assert l01.check_size_retention_prediction(36, SEGS, 1500).ok is True
    assert l01.check_size_retention_prediction(None, SEGS, 1500).ok is None
    assert "whole segments" in l01.check_size_retention_prediction(30, SEGS, 1500).message
    assert "ABOVE the limit" in l01.check_size_retention_prediction(36, SEGS, 2000).message
    assert "every closed segment" in l01.check_size_retention_prediction(48, SEGS, 2000).message
    assert "too few" in l01.check_size_retention_prediction(12, SEGS, 1500).message
    assert "whole number" in l01.check_size_retention_prediction("many", SEGS, 1500).message


# -- lab 05 -------------------------------------------------------------------------------

def test_high_watermark_right():
    assert l05.check_high_watermark(lambda leos, isr: min(leos[b] for b in isr)).ok is True


@pytest.mark.parametrize("fn, hint", [
    (lambda leos, isr: min(leos.values()), "only in-sync replicas count"),
    (lambda leos, isr: max(leos[b] for b in isr), "smallest LEO"),
    (lambda leos, isr: min(leos[b] for b in isr) - 1, "No -1"),
    (lambda leos, isr: sum(leos.values()) // len(leos), "smallest log end offset"),
    (_unfinished, "Not answered"),
])
def test_high_watermark_wrong(fn, hint):
    fb = l05.check_high_watermark(fn)
    assert fb.ok is not True and hint in fb.message


def test_eligible_leaders_right():
    assert l05.check_eligible_leaders(l05.eligible_leaders_reference).ok is True


@pytest.mark.parametrize("fn, hint", [
    (lambda r, isr, alive, u: set(isr), "down cannot lead"),
    (lambda r, isr, alive, u: {b for b in alive if b in r}, "only an in-sync replica"),
    (lambda r, isr, alive, u: {b for b in isr if b in alive}, "any live replica may lead"),
    (lambda r, isr, alive, u: {b for b in isr if b in alive} or {b for b in r if b in alive}, "goes offline"),
    (lambda r, isr, alive, u: l05.eligible_leaders_reference(r, isr, alive, u) | (set(alive) - set(r)),
     "holds a replica"),
    (lambda r, isr, alive, u: ({b for b in r if b in alive} if u else {b for b in isr if b in alive}),
     "prefers the ISR"),
    (lambda r, isr, alive, u: 7, "set of broker ids"),
    (_unfinished, "Not answered"),
])
def test_eligible_leaders_wrong(fn, hint):
    fb = l05.check_eligible_leaders(fn)
    assert fb.ok is not True and hint in fb.message, fb.message
