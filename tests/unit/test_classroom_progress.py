"""A learner's progress: every check cell's verdict is recorded, and exported for an instructor."""

from __future__ import annotations

import csv
import datetime
import io
import json
import sys
from pathlib import Path

import pytest
from IPython.lib.pretty import pretty

from kafkalab.classroom import progress

LABS = Path(__file__).resolve().parents[2] / "labs"
sys.path.insert(0, str(LABS))

import lab02_checks as l02  # noqa: E402
from checkers import reveal, right  # noqa: E402

from kafkalab.client.partitioner import murmur2  # noqa: E402

T0 = datetime.datetime(2026, 1, 1, 9, 0, tzinfo=datetime.UTC)


def _unfinished(*args):
    raise NotImplementedError


def _solution(key, count, available):
    return (murmur2(key) & 0x7FFFFFFF) % count


@pytest.fixture
def progress_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv(progress.ENV, str(path))
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    return path


def test_record_counts_attempts_and_a_pass_is_never_undone():
    state = progress.record({}, "02", "partitioner", False, T0)
    state = progress.record(state, "02", "partitioner", True, T0)
    state = progress.record(state, "02", "partitioner", False, T0)
    [row] = progress.rows(state, "ann")
    assert row == {"learner": "ann", "lab": "02", "exercise": "partitioner", "passed": True,
                   "attempts": 3, "last_result": "fail", "last_attempt": "2026-01-01T09:00:00+00:00"}


def test_table_and_csv_list_exercises_in_lab_order():
    state = progress.record({}, "10", "quorum_sizes", True, T0)
    state = progress.record(state, "02", "partitioner", False, T0)
    rows = progress.rows(state, "ann")
    text = progress.table(rows)
    assert text.index("partitioner") < text.index("quorum_sizes")
    assert text.splitlines()[-1] == "1 of 2 checked exercises passed"
    parsed = list(csv.DictReader(io.StringIO(progress.to_csv(rows))))
    assert [(r["lab"], r["exercise"], r["passed"], r["attempts"]) for r in parsed] == [
        ("02", "partitioner", "False", "1"), ("10", "quorum_sizes", "True", "1")]


def test_a_shown_check_records_its_lab_and_exercise(progress_file):
    pretty(l02.check_partitioner(_unfinished))       # not answered: no attempt
    assert not progress_file.exists()
    pretty(l02.check_partitioner(lambda k, n, a: 0))  # wrong
    pretty(l02.check_partitioner(_solution))          # right
    entry = json.loads(progress_file.read_text())["exercises"]["02/partitioner"]
    assert (entry["passed"], entry["attempts"], entry["last_result"]) == (True, 2, "pass")


def test_a_check_used_in_code_records_nothing(progress_file):
    assert l02.check_partitioner(_solution)  # a reference cell's assert, not the learner's check
    pretty(right("made outside a lab's checker"))
    assert not progress_file.exists()


def test_recording_can_be_switched_off(monkeypatch, tmp_path):
    monkeypatch.setenv(progress.ENV, "off")
    assert progress.progress_path() is None
    monkeypatch.setenv(progress.ENV, str(tmp_path / "p.json"))
    assert progress.progress_path() == tmp_path / "p.json"


def test_under_the_autograder_a_failed_check_raises(progress_file, monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(AssertionError, match="Not yet"):
        pretty(l02.check_partitioner(lambda k, n, a: 0))
    with pytest.raises(AssertionError, match="Not answered"):
        pretty(l02.check_partitioner(_unfinished))
    assert "Correct" in pretty(l02.check_partitioner(_solution))
    assert "No prediction made" in pretty(reveal(None, 2, "partition"))  # predictions are not graded
    assert "Not yet" in pretty(reveal(1, 2, "partition"))


def test_a_broken_progress_file_is_named(progress_file):
    progress_file.write_text("{not json")
    with pytest.raises(ValueError, match="progress.json is not valid JSON"):
        progress.load(progress_file)


def test_cli_prints_the_table_and_csv(progress_file, capsys):
    from kafkalab.cli import main

    pretty(l02.check_partitioner(_solution))
    assert main(["progress"]) == 0
    out = capsys.readouterr().out
    assert "02   partitioner  yes" in out
    assert main(["progress", "--csv"]) == 0
    [row] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert (row["lab"], row["exercise"], row["passed"], row["attempts"]) == ("02", "partitioner", "True", "1")
