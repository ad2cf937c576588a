"""nbgrader on one lab: the course source written from the labs, `generate_assignment` making a
student version without the reference answers, and `autograde` grading a filled copy (one exercise
right, one wrong)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kafkalab.classroom.course import write_source

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(600)]

LABS = Path(__file__).resolve().parents[2] / "labs"
LAB = "15_kafka_in_2_minutes.ipynb"  # the shortest lab: two exercises, one small cluster


def _nbgrader(course: Path, *args: str) -> None:
    env = {**os.environ, "KAFKALAB_PROGRESS": "off"}
    r = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=course, env=env,
                       capture_output=True, text=True, timeout=500)
    assert r.returncode == 0, f"nbgrader {args[0]} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def test_generate_assignment_hides_the_references_and_autograde_scores_a_filled_copy(tmp_path):
    [source] = write_source(tmp_path, ["15"], source=LABS)
    assert sorted(p.name for p in source.iterdir()) == [LAB, "checkers.py", "lab15_checks.pyc"]

    _nbgrader(tmp_path, "generate_assignment", "lab15")
    released = nbformat.read(tmp_path / "release" / "lab15" / LAB, as_version=4)
    by_id = {c.metadata["nbgrader"]["grade_id"]: c for c in released.cells if "nbgrader" in c.metadata}
    assert by_id["lab15-ex1-reference"].source == "" and by_id["lab15-ex2-reference"].source == ""
    assert "NotImplementedError" in by_id["lab15-ex2-answer"].source
    text = nbformat.writes(released)
    assert "durable_settings_solution" not in text and "answers_solution" not in text
    # The checkers travel as bytecode: no source, and the hints' prose is not in plain text.
    release = tmp_path / "release" / "lab15"
    assert not (release / "lab15_checks.py").exists()
    assert b"Exercise 2: durable_settings()" not in (release / "lab15_checks.pyc").read_bytes()
    assert all(not c.get("outputs") for c in released.cells if c.cell_type == "code")

    # A learner answers the quiz right (the reference cell's answers) and the settings wrong.
    source_nb = nbformat.read(source / LAB, as_version=4)
    [line] = [ln for c in source_nb.cells if "solution" in c.metadata.get("tags", [])
              for ln in c.source.splitlines() if ln.startswith("answers_solution = ")]
    quiz = ast.literal_eval(line.split("=", 1)[1].strip())
    submitted = tmp_path / "submitted" / "ann" / "lab15"
    shutil.copytree(tmp_path / "release" / "lab15", submitted)
    by_id["lab15-ex1-answer"].source = f"my_answers = {quiz!r}"
    by_id["lab15-ex2-answer"].source = 'def durable_settings():\n    return {"acks": "1"}'
    nbformat.write(released, submitted / LAB)

    _nbgrader(tmp_path, "autograde", "lab15")
    graded = nbformat.read(tmp_path / "autograded" / "ann" / "lab15" / LAB, as_version=4)
    failed = [c.metadata.get("nbgrader", {}).get("grade_id", c.source[:40]) for c in graded.cells
              if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)]
    assert failed == ["lab15-ex2-check"]  # only the wrong answer's check; predictions never raise
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission("lab15", "ann")
        scores = {g.name: (g.score, g.max_score) for nb in submission.notebooks for g in nb.grades}
        assert scores["lab15-ex1-check"] == (1.0, 1.0)
        assert scores["lab15-ex2-check"] == (0.0, 2.0)
        assert (submission.score, submission.max_score) == (1.0, 3.0)
