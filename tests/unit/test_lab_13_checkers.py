"""Lab 13's exercise checkers: each accepts a right answer, reports an unfinished stub as not
answered, and gives a specific hint on typical wrong answers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import lab13_checks as l13  # noqa: E402

from kafkalab.mirror.core import OffsetSync, OffsetSyncStore  # noqa: E402


def _unfinished(*args):
    raise NotImplementedError


def test_translate_reference_agrees_with_the_replicators_store():
    for syncs, g in l13.TRANSLATE_CASES:
        store = OffsetSyncStore()
        for u, d in sorted(syncs):
            store.add(OffsetSync("t", 0, u, d))
        assert store.translate(("t", 0), g) == l13.translate_reference(syncs, g)


def test_translate_right():
    def translate(syncs, g):
        best = None
        for u, d in sorted(syncs):
            if u <= g:
                best = d if u == g else d + 1
        return best
    assert l13.check_translate(translate).ok is True
    assert l13.check_translate(l13.translate_reference).ok is True


def test_translate_unfinished():
    assert l13.check_translate(_unfinished).ok is None


def _newest_at_or_below(syncs, g):
    below = [s for s in syncs if s[0] <= g]
    return max(below) if below else None


@pytest.mark.parametrize("answer, hint", [
    (lambda syncs, g: (lambda s: None if s is None else s[1] + (g - s[0]))(_newest_at_or_below(syncs, g)),
     "advance together"),
    (lambda syncs, g: (lambda s: None if s is None else s[1])(_newest_at_or_below(syncs, g)), "already"),
    (lambda syncs, g: max(syncs)[1] + (max(syncs)[0] != g), "beyond"),
    (lambda syncs, g: (lambda s: None if s is None else s[1] + 1)(_newest_at_or_below(syncs, g)), "exactly"),
    (lambda syncs, g: (lambda s: 0 if s is None else s[1] + (s[0] != g))(_newest_at_or_below(syncs, g)),
     "None"),
])
def test_translate_typical_wrong_answers(answer, hint):
    fb = l13.check_translate(answer)
    assert fb.ok is False and hint in fb.message, fb.message


def test_remote_name_right():
    def remote_name(topic, source, target):
        return None if topic.split(".")[0] == target and "." in topic else f"{source}.{topic}"
    assert l13.check_remote_name(remote_name).ok is True
    assert l13.check_remote_name(l13.remote_name_reference).ok is True


def test_remote_name_unfinished():
    assert l13.check_remote_name(_unfinished).ok is None


@pytest.mark.parametrize("answer, hint", [
    (lambda topic, source, target: f"{source}.{topic}", "loop"),
    (lambda topic, source, target: None if topic.startswith(target) else f"{source}.{topic}", "first '.'"),
    (lambda topic, source, target: None if "." in topic else f"{source}.{topic}", "third"),
    (lambda topic, source, target: None if topic.startswith(target + ".") else f"{target}.{topic}",
     "<source alias>"),
])
def test_remote_name_typical_wrong_answers(answer, hint):
    fb = l13.check_remote_name(answer)
    assert fb.ok is False and hint in fb.message, fb.message
