"""Learner copies give nothing away, and every exercise of every lab carries nbgrader's metadata."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from kafkalab.classroom import kit, nbgrader_meta

LABS = Path(__file__).resolve().parents[2] / "labs"
LAB_FILES = sorted(LABS.glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("learner")
    kit.write_labs(target, source=LABS)
    return target


def test_the_labs_are_found_in_a_checkout():
    assert kit.labs_source() == LABS
    assert len(kit.notebooks(LABS)) == len(LAB_FILES) >= 13


def test_copies_have_no_saved_outputs_and_no_execution_counts(copies):
    assert sorted(p.name for p in copies.glob("*.ipynb")) == [p.name for p in LAB_FILES]
    committed_outputs = 0
    for path in LAB_FILES:
        committed_outputs += sum(len(c.get("outputs", [])) for c in nbformat.read(path, 4).cells)
        nb = nbformat.read(copies / path.name, as_version=4)
        for cell in nb.cells:
            assert "execution" not in cell.metadata and "nbgrader" not in cell.metadata
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (path.name, cell.source[:60])
                assert not any(m in cell.source for m in nbgrader_meta.MARKERS), (path.name, cell.source)
    assert committed_outputs > 0  # the repository's notebooks keep theirs for nbval


def test_copies_keep_solutions_collapsed_and_the_checkers_beside_them(copies):
    for path in LAB_FILES:
        nb = nbformat.read(copies / path.name, as_version=4)
        solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
        assert solutions and all(c.metadata["jupyter"]["source_hidden"] for c in solutions)
        lab = path.name[:2]
        assert (copies / f"lab{lab}_checks.py").read_text() == (LABS / f"lab{lab}_checks.py").read_text()
    assert (copies / "checkers.py").is_file() and not (copies / "conftest.py").exists()


def test_a_learners_notebook_is_kept_unless_forced(tmp_path):
    kit.write_labs(tmp_path, source=LABS)
    mine = tmp_path / "00_start_here.ipynb"
    mine.write_text(mine.read_text().replace("answer_1 = None", "answer_1 = 'mine'"))
    again = kit.write_labs(tmp_path, source=LABS)
    assert mine in again.kept and mine not in again.written and "answer_1 = 'mine'" in mine.read_text()
    forced = kit.write_labs(tmp_path, force=True, source=LABS)
    assert mine in forced.written and "answer_1 = 'mine'" not in mine.read_text()


@pytest.mark.parametrize(("extra", "root", "want"), [
    ([], False, []),
    ([], True, ["--allow-root"]),
    (["--", "--allow-root"], True, ["--allow-root"]),
    (["--", "--port", "9999"], False, ["--port", "9999"]),
])
def test_jupyter_command_passes_allow_root_once_when_root(extra, root, want):
    cmd = kit.jupyter_command(Path("/x/labs"), extra, is_root=root)
    assert cmd[1:5] == ["-m", "jupyter", "lab", "--ServerApp.root_dir=/x/labs"]
    assert cmd[5:] == want


@pytest.mark.parametrize("path", LAB_FILES, ids=lambda p: p.name)
def test_every_exercise_carries_nbgrader_metadata_and_the_tool_has_nothing_left_to_do(path):
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    exercises = nbgrader_meta.apply(nb, nbgrader_meta.lab_id(path))
    assert nbformat.writes(nb) == before, (
        f"run `python -m kafkalab.classroom.nbgrader_meta {path.relative_to(LABS.parent)}`")
    assert exercises
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(exercises) == len(solutions)
    ids = []
    for ex in exercises:
        answer, check, ref = (nb.cells[i].metadata["nbgrader"] for i in (ex.answer, ex.check, ex.reference))
        assert answer["solution"] and not answer["grade"]
        assert check["grade"] and check["locked"] and check["points"] > 0
        assert ref["grade"] and ref["points"] == 0
        assert nbgrader_meta.BEGIN_SOLUTION in nb.cells[ex.answer].source
        assert nb.cells[ex.reference].source.startswith(nbgrader_meta.BEGIN_HIDDEN)
        ids += [answer["grade_id"], check["grade_id"], ref["grade_id"]]
    assert len(ids) == len(set(ids))
    for cell in nb.cells:  # nbval's compared cells are never graded, so never rewritten
        if cell.source.lstrip().startswith(nbgrader_meta.NBVAL_CHECK):
            assert "nbgrader" not in cell.metadata


def test_the_tool_is_idempotent_and_keeps_what_nbval_compares():
    raw = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def f(x):\n    # your code here\n    raise NotImplementedError"),
        nbformat.v4.new_code_cell("check_f(f)"),
        nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)"),
        nbformat.v4.new_code_cell("assert check_f(lambda x: x)", metadata={"tags": ["solution"]}),
    ])
    nbgrader_meta.apply(raw, "42")
    once = nbformat.writes(raw)
    nbgrader_meta.apply(raw, "42")
    assert nbformat.writes(raw) == once
    assert raw.cells[0].source == ("def f(x):\n    ### BEGIN SOLUTION\n    # your code here\n"
                                   "    raise NotImplementedError\n    ### END SOLUTION")
    assert raw.cells[1].metadata["nbgrader"]["grade_id"] == "lab42-ex1-check"
    assert raw.cells[2].source == "# NBVAL_CHECK_OUTPUT\nprint(1)" and "nbgrader" not in raw.cells[2].metadata


def test_a_lab_that_breaks_the_pattern_is_named():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("assert True", metadata={"tags": ["solution"]}),
    ])
    with pytest.raises(ValueError, match="cell 1 is tagged `solution` but no check cell"):
        nbgrader_meta.apply(nb, "42")


def test_kafkalab_lab_writes_the_copies_then_starts_jupyterlab_there(tmp_path, monkeypatch):
    from kafkalab import cli

    started = []
    monkeypatch.setattr(kit.os, "execvp", lambda file, args: started.append(args))
    monkeypatch.setattr(kit.os, "geteuid", lambda: 0)
    target = tmp_path / "mine"
    assert cli.main(["lab", "--dir", str(target), "--", "--port", "8899"]) == 0
    assert (target / "00_start_here.ipynb").is_file() and (target / "lab00_checks.py").is_file()
    [args] = started
    assert args[-4:] == [f"--ServerApp.root_dir={target}", "--allow-root", "--port", "8899"]


def test_kafkalab_labs_reports_what_it_kept(tmp_path, capsys):
    from kafkalab import cli

    assert cli.main(["labs", str(tmp_path)]) == 0
    assert f"wrote {len(LAB_FILES)} labs" in capsys.readouterr().out
    assert cli.main(["labs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wrote 0 labs" in out and f"kept {len(LAB_FILES)} you already have" in out


def test_binder_post_build_writes_the_learner_copies_the_badge_opens(tmp_path):
    import os
    import subprocess
    import sys

    post_build = LABS.parent / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run([str(post_build)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    badge_target = "kafkalab-labs/00_start_here.ipynb"
    assert f"urlpath=lab/tree/{badge_target}" in (LABS.parent / "README.md").read_text()
    nb = nbformat.read(tmp_path / badge_target, as_version=4)
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
