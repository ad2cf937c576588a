"""Lab 14's exercise checker: accepts a right answer, gives a specific hint on a wrong one."""

from __future__ import annotations

import sys
from pathlib import Path

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import lab14_checks as l14  # noqa: E402


def _unfinished(*args):
    raise NotImplementedError


def test_record_after_right():
    assert l14.check_record_after(l14.record_after_reference).ok is True


def test_record_after_unfinished():
    fb = l14.check_record_after(_unfinished)
    assert fb.ok is None and "Not answered" in fb.message


def test_record_after_never_archives_gets_the_delivery_limit_hint():
    def no_limit(events, limit):
        state, count = l14.record_after_reference(events, 10**9)
        return state, count
    fb = l14.check_record_after(no_limit)
    assert fb.ok is False and "delivery_limit" in fb.message


def test_record_after_counting_every_event_gets_the_count_hint():
    def counts_all(events, limit):
        state, _ = l14.record_after_reference(events, limit)
        return state, len(events)
    fb = l14.check_record_after(counts_all)
    assert fb.ok is False and "acquired" in fb.message


def test_record_after_wrong_shape():
    fb = l14.check_record_after(lambda events, limit: "acknowledged")
    assert fb.ok is False and "pair" in fb.message


def test_reference_cases():
    ref = l14.record_after_reference
    assert ref(["acquire", "release", "acquire", "release"], 2) == ("archived", 2)
    assert ref(["acquire", "expire"], 5) == ("available", 1)
    assert ref(["acquire", "accept", "acquire"], 5) == ("acknowledged", 1)
