"""nbgrader metadata for the labs' exercises, applied by a tool so it can be re-run on edited labs.

Every exercise in a lab is three code cells, in this order:
- the answer cell the learner fills in (a stub that raises NotImplementedError, or `answer = None`),
- the check cell, whose last line calls a `check_*` function and shows its verdict,
- the reference cell, tagged `solution` (collapsed), asserting that the reference passes the check.

This tool makes the answer cell an nbgrader solution cell (the stub between `### BEGIN SOLUTION`
and `### END SOLUTION`, which `nbgrader generate_assignment` replaces with its own stub), the check
cell a graded, locked test cell with points, and the reference cell a hidden test worth no points
(its whole source between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS`, so the student
version does not carry it; nbgrader puts it back when it autogrades). Running it twice changes
nothing. Cells compared by nbval (`# NBVAL_CHECK_OUTPUT`) are never rewritten.

    python -m kafkalab.classroom.nbgrader_meta labs/*.ipynb
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
NBVAL_CHECK = "# NBVAL_CHECK_OUTPUT"
_CHECK_CALL = re.compile(r"^check_\w+\(")
_STUB_LINE = re.compile(r"^\s*(# your code here|raise NotImplementedError\b.*)\s*$")
POINTS_FUNCTION, POINTS_VALUE = 2, 1  # writing a function is worth more than one predicted value


@dataclass(frozen=True)
class Exercise:
    number: int
    answer: int     # cell indexes
    check: int
    reference: int


def _is_checked_by_nbval(cell) -> bool:
    return cell.source.lstrip().startswith(NBVAL_CHECK)


def _last_line(source: str) -> str:
    lines = [ln for ln in source.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def find_exercises(nb) -> list[Exercise]:
    """The exercises of a lab, found from its reference cells; a lab that breaks the pattern fails
    with the cell to fix."""
    found = []
    for ref, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "solution" not in cell.metadata.get("tags", []):
            continue
        check = next((i for i in range(ref - 1, -1, -1) if nb.cells[i].cell_type == "code"
                      and not _is_checked_by_nbval(nb.cells[i])
                      and _CHECK_CALL.match(_last_line(nb.cells[i].source))), None)
        answer = None if check is None else next(
            (i for i in range(check - 1, -1, -1) if nb.cells[i].cell_type == "code"), None)
        if check is None or answer is None or _is_checked_by_nbval(nb.cells[answer]):
            raise ValueError(f"cell {ref} is tagged `solution` but no check cell (last line "
                             "`check_...(...)`) and answer cell come before it; an exercise is "
                             "answer cell, check cell, solution cell")
        found.append(Exercise(len(found) + 1, answer, check, ref))
    return found


def _strip_markers(source: str) -> str:
    return "\n".join(ln for ln in source.splitlines() if ln.strip() not in MARKERS)


def _answer_source(source: str) -> str:
    """The stub lines between solution markers (a function body), or an empty region after the
    placeholder assignment; nbgrader writes its own stub there for the student."""
    lines = _strip_markers(source).splitlines()
    stub = [i for i, ln in enumerate(lines) if _STUB_LINE.match(ln)]
    if stub:
        first, last = stub[0], stub[-1]
        indent = re.match(r"\s*", lines[first]).group(0)
        lines = (lines[:first] + [indent + BEGIN_SOLUTION] + lines[first:last + 1]
                 + [indent + END_SOLUTION] + lines[last + 1:])
    else:
        lines = lines + [BEGIN_SOLUTION, END_SOLUTION]
    return "\n".join(lines)


def _meta(grade_id: str, *, solution: bool, grade: bool, locked: bool, points: int | None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def lab_id(path: Path) -> str:
    return path.name.split("_", 1)[0]


def apply(nb, lab: str) -> list[Exercise]:
    """Add the nbgrader metadata and markers to every exercise of a lab notebook (in place)."""
    exercises = find_exercises(nb)
    for ex in exercises:
        answer, check, ref = nb.cells[ex.answer], nb.cells[ex.check], nb.cells[ex.reference]
        stem = f"lab{lab}-ex{ex.number}"
        points = POINTS_FUNCTION if "def " in answer.source else POINTS_VALUE
        answer.source = _answer_source(answer.source)
        answer.metadata["nbgrader"] = _meta(f"{stem}-answer", solution=True, grade=False,
                                            locked=False, points=None)
        check.metadata["nbgrader"] = _meta(f"{stem}-check", solution=False, grade=True,
                                           locked=True, points=points)
        ref.source = "\n".join([BEGIN_HIDDEN, _strip_markers(ref.source), END_HIDDEN])
        ref.metadata["nbgrader"] = _meta(f"{stem}-reference", solution=False, grade=True,
                                         locked=True, points=0)
    return exercises


def strip(nb) -> None:
    """A learner's copy: no nbgrader metadata, no marker lines (in place)."""
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
        if cell.cell_type == "code" and any(m in cell.source for m in MARKERS):
            cell.source = _strip_markers(cell.source)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m kafkalab.classroom.nbgrader_meta labs/NN_name.ipynb ...", file=sys.stderr)
        return 2
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        try:
            exercises = apply(nb, lab_id(path))
        except ValueError as e:
            print(f"{path}: {e}", file=sys.stderr)
            return 1
        after = nbformat.writes(nb)
        if after != before:
            path.write_text(after if after.endswith("\n") else after + "\n")
        print(f"{path}: {len(exercises)} exercises{'' if after != before else ' (unchanged)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
