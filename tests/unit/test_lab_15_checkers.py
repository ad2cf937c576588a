"""Checkers of the recap notebook (lab 15): right answers pass, wrong ones get a specific hint."""

from __future__ import annotations

import sys
from pathlib import Path

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import lab15_checks as l15  # noqa: E402

RIGHT = {1: "b", 2: "a", 3: "b", 4: "a", 5: "b", 6: "b"}


def _unfinished():
    raise NotImplementedError


def test_quiz_right_unanswered_and_wrong():
    assert l15.check_quiz(RIGHT).ok is True
    assert l15.check_quiz({q: a.upper() for q, a in RIGHT.items()}).ok is True
    assert l15.check_quiz({q: None for q in RIGHT}).ok is None
    partly = l15.check_quiz({**RIGHT, 6: None})
    assert partly.ok is None and "[6]" in partly.message
    fb = l15.check_quiz({**RIGHT, 1: "a", 6: "a"})
    assert fb.ok is False and "4 of 6" in fb.message
    assert "high watermark" in fb.message and "ISR" in fb.message and "Q2" not in fb.message
    assert l15.check_quiz({**RIGHT, 3: "d"}).ok is False
    assert l15.check_quiz(["b"]).ok is False


SAFE = {"replication_factor": 3, "min.insync.replicas": 2, "acks": "all",
        "enable.idempotence": True, "unclean.leader.election.enable": False}


def test_durable_settings_right_unfinished_and_each_mistake():
    assert l15.check_durable_settings(lambda: dict(SAFE)).ok is True
    assert l15.check_durable_settings(lambda: {**SAFE, "acks": -1, "replication_factor": 5,
                                               "min.insync.replicas": 3}).ok is True
    assert l15.check_durable_settings(_unfinished).ok is None
    cases = {
        "acks=1": ({"acks": "1"}, "acks=all"),
        "rf2": ({"replication_factor": 2}, "fewer than 3"),
        "min_isr1": ({"min.insync.replicas": 1}, "leader alone"),
        "min_isr3": ({"min.insync.replicas": 3}, "NOT_ENOUGH_REPLICAS"),
        "no idempotence": ({"enable.idempotence": False}, "written twice"),
        "unclean": ({"unclean.leader.election.enable": True}, "out-of-sync"),
    }
    for name, (change, hint) in cases.items():
        fb = l15.check_durable_settings(lambda change=change: {**SAFE, **change})
        assert fb.ok is False and hint in fb.message, name
    missing = l15.check_durable_settings(lambda: {"acks": "all"})
    assert missing.ok is False and "replication_factor" in missing.message
    assert l15.check_durable_settings(lambda: "all").ok is False
