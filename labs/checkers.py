"""Shared helpers for the labs' exercises and predictions.

Every checker returns a `Feedback`: `ok` is True (right), False (wrong, with a specific hint)
or None (not answered yet). A notebook cell shows it as one line of text; tests read `.ok`
and `.message`. Checkers never raise on a wrong answer: a learner gets a hint, not a traceback.

Per-lab checkers live next to this file (lab00_checks.py, lab01_checks.py, ...).

When a check cell shows its Feedback, the result is recorded in the learner's progress file
(`kafkalab progress`); under nbgrader's autograder a Feedback that is not a pass raises, so the
graded cell scores zero. A Feedback only used inside code (`assert check_...`) records nothing.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NOT_ANSWERED = "Not answered yet: fill in your answer in the cell above, run it, then run this cell again."


_LAB_MODULE = re.compile(r"lab(\d+)_checks$")


def _checker_in_progress() -> tuple[str, str] | None:
    """(lab, exercise) of the outermost `check_*` function of a labNN_checks module on the stack."""
    found = None
    frame = sys._getframe(2)
    while frame is not None:
        match = _LAB_MODULE.search(frame.f_globals.get("__name__", ""))
        name = frame.f_code.co_name
        if match and name.startswith("check_"):
            found = (match.group(1), name.removeprefix("check_"))
        frame = frame.f_back
    return found


@dataclass(frozen=True)
class Feedback:
    ok: bool | None
    message: str
    exercise: tuple[str, str] | None = field(default_factory=_checker_in_progress, compare=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.ok)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # Called when a cell shows this Feedback: the learner checked an answer.
        if self.exercise is not None and self.ok is not None:
            try:
                from kafkalab.classroom.progress import save_result

                save_result(*self.exercise, ok=bool(self.ok))
            except OSError:
                pass  # progress is a convenience: an unwritable home never breaks a lab
        if os.environ.get("NBGRADER_EXECUTION") and self.exercise is not None and not self.ok:
            # An error output, so nbgrader gives the check cell no points (a prediction's
            # reveal() is not graded and never raises).
            raise AssertionError(str(self))
        p.text(str(self))

    def __str__(self) -> str:
        mark = {True: "✅ Correct.", False: "❌ Not yet.", None: "✏️"}[self.ok]
        return f"{mark} {self.message}".rstrip()

    def __repr__(self) -> str:
        return str(self)


def right(message: str = "") -> Feedback:
    return Feedback(True, message)


def wrong(hint: str) -> Feedback:
    return Feedback(False, hint)


def not_answered() -> Feedback:
    return Feedback(None, NOT_ANSWERED)


def reveal(prediction: Any, actual: Any, what: str) -> Feedback:
    """Compare a learner's prediction with what the cluster did (a prediction, not a test)."""
    if prediction is None or (isinstance(prediction, dict) and all(v is None for v in prediction.values())):
        return Feedback(None, f"No prediction made. {what}: {actual!r}.")
    if prediction == actual:
        return right(f"You predicted {what} = {prediction!r}, and the cluster agrees.")
    return wrong(f"You predicted {what} = {prediction!r}; the cluster says {actual!r}. "
                 "Read the next cell to see why.")


def call_learner(fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    """Run a learner's function: (True, result), or (False, Feedback) if it is unfinished or raised."""
    try:
        return True, fn(*args)
    except NotImplementedError:
        return False, not_answered()
    except Exception as e:  # noqa: BLE001 - the learner's code may raise anything
        args_text = ", ".join(repr(a) for a in args)
        return False, wrong(f"your function raised {type(e).__name__}: {e} when called with ({args_text}).")
