"""Lab 12's exercise checkers: each accepts a right answer and gives a specific hint on a wrong one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import lab12_checks as l12  # noqa: E402

RIGHT = {"A": {"BACKWARD", "FORWARD", "FULL"}, "B": {"FORWARD"}, "C": {"BACKWARD"}, "D": {"BACKWARD"}, "E": set()}


# -- Exercise 1: which modes accept each change --------------------------------------------------

def test_reference_is_what_the_rules_say() -> None:
    assert l12.acceptance_reference() == RIGHT


def test_acceptance_right_and_case_and_none_do_not_matter() -> None:
    assert l12.check_acceptance(RIGHT).ok is True
    assert l12.check_acceptance({**RIGHT, "A": {"none", "backward", "forward", "full"}, "E": ["NONE"]}).ok is True


def test_acceptance_unanswered() -> None:
    fb = l12.check_acceptance({n: None for n in l12.CHANGES})
    assert fb.ok is None and "Not answered" in fb.message


@pytest.mark.parametrize("answers, hint", [
    ({"A": {"BACKWARD", "FORWARD", "FULL"}, "B": {"BACKWARD"}, "C": {"FORWARD"}, "D": {"FORWARD"}, "E": set()},
     "swapped BACKWARD and FORWARD"),
    ({**RIGHT, "B": {"FORWARD", "FULL"}}, "FULL is BACKWARD and FORWARD together"),
    ({**RIGHT, "B": {"BACKWARD", "FORWARD"}}, "B: a new reader"),
    ({**RIGHT, "C": {"BACKWARD", "FORWARD"}}, "C: a reader ignores"),
    ({**RIGHT, "D": {"BACKWARD", "FORWARD"}}, "promotes an int to a long"),
    ({**RIGHT, "E": {"BACKWARD"}}, "E: no reader"),
    ({**RIGHT, "A": {"BACKWARD"}}, "A: a field with a default"),
    ({**RIGHT, "A": {"SIDEWAYS"}}, "not one of"),
    ({**RIGHT, "A": None}, "answer each of"),
    ({**RIGHT, "A": 3}, "give a set of modes"),
])
def test_acceptance_wrong_answers_get_specific_hints(answers, hint) -> None:
    fb = l12.check_acceptance(answers)
    assert fb.ok is False and hint in fb.message, fb.message


# -- Exercise 2: the schema id a value carries ---------------------------------------------------

def _unfinished(value):
    raise NotImplementedError


def _little_endian(value):
    if value is None or len(value) < 5 or value[0] != 0:
        return None
    return int.from_bytes(value[1:5], "little")


def _includes_magic(value):
    if value is None or len(value) < 5 or value[0] != 0:
        return None
    return int.from_bytes(value[0:4], "big")


def _no_magic_check(value):
    if value is None or len(value) < 5:
        return None
    return int.from_bytes(value[1:5], "big")


def _no_length_check(value):
    return int.from_bytes(value[1:5], "big") if value and value[0] == 0 else None


def test_schema_id_right() -> None:
    assert l12.check_schema_id(l12.schema_id_reference).ok is True


def test_schema_id_unfinished() -> None:
    fb = l12.check_schema_id(_unfinished)
    assert fb.ok is None and "Not answered" in fb.message


@pytest.mark.parametrize("fn, hint", [
    (_little_endian, "big-endian"),
    (_includes_magic, "byte 0 is the magic byte"),
    (_no_magic_check, "check the magic byte"),
    (_no_length_check, "shorter than 5 bytes"),
    (lambda value: value + 1, "raised"),
])
def test_schema_id_wrong_answers_get_specific_hints(fn, hint) -> None:
    fb = l12.check_schema_id(fn)
    assert fb.ok is False and hint in fb.message, fb.message
