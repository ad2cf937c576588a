"""Shared helpers for the labs' exercises and predictions.

Every checker returns a `Feedback`: `ok` is True (right), False (wrong, with a specific hint)
or None (not answered yet). A notebook cell shows it as one line of text; tests read `.ok`
and `.message`. Checkers never raise on a wrong answer: a learner gets a hint, not a traceback.

Per-lab checkers live next to this file (lab00_checks.py, lab01_checks.py, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NOT_ANSWERED = "Not answered yet: fill in your answer in the cell above, run it, then run this cell again."


@dataclass(frozen=True)
class Feedback:
    ok: bool | None
    message: str

    def __bool__(self) -> bool:
        return bool(self.ok)

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
