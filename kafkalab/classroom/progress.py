"""A learner's progress: every checked answer is recorded (pass/fail, attempts) in a small JSON
file under the user's data dir, so `kafkalab progress` can print it and export it for an instructor.

`KAFKALAB_PROGRESS` names another file (tests point it at a temporary one); `off` records nothing.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import fcntl
import getpass
import io
import json
import os
from pathlib import Path
from typing import Any

ENV = "KAFKALAB_PROGRESS"
COLUMNS = ("learner", "lab", "exercise", "passed", "attempts", "last_result", "last_attempt")


def progress_path() -> Path | None:
    """Where the progress file lives, or None if recording is off."""
    override = os.environ.get(ENV)
    if override:
        return None if override.lower() == "off" else Path(override).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data_home) / "kafkalab" / "progress.json"


def learner_name() -> str:
    # On a JupyterHub every learner's server knows its user; elsewhere the login name.
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


def record(state: dict[str, Any], lab: str, exercise: str, ok: bool, now: datetime.datetime) -> dict[str, Any]:
    """The state after one checked answer (pure: returns a new dict)."""
    key = f"{lab}/{exercise}"
    entries = dict(state.get("exercises", {}))
    old = entries.get(key, {"lab": lab, "exercise": exercise, "passed": False, "attempts": 0})
    entries[key] = {
        "lab": lab,
        "exercise": exercise,
        "passed": bool(old["passed"] or ok),  # once passed, a later wrong try does not undo it
        "attempts": int(old["attempts"]) + 1,
        "last_result": "pass" if ok else "fail",
        "last_attempt": now.isoformat(timespec="seconds"),
    }
    return {"version": 1, "exercises": entries}


def rows(state: dict[str, Any], learner: str) -> list[dict[str, Any]]:
    """One row per exercise, in lab order."""
    entries = sorted(state.get("exercises", {}).values(), key=lambda e: (e["lab"], e["exercise"]))
    return [{"learner": learner, **{k: e.get(k) for k in COLUMNS[1:]}} for e in entries]


def table(rows_: list[dict[str, Any]]) -> str:
    if not rows_:
        return "No exercise checked yet: run an exercise's check cell in a lab."
    cols = ("lab", "exercise", "passed", "attempts")
    cells = [[str(r[c]) if c != "passed" else ("yes" if r[c] else "no") for c in cols] for r in rows_]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    done = sum(1 for r in rows_ if r["passed"])
    lines.append(f"{done} of {len(rows_)} checked exercises passed")
    return "\n".join(lines)


def to_csv(rows_: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows_)
    return out.getvalue()


def load(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        return {"version": 1, "exercises": {}}
    except ValueError as e:
        raise ValueError(f"the progress file {path} is not valid JSON ({e}); move it away to start afresh") from e
    return state


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two kernels of one learner may check at once
        yield


def save_result(lab: str, exercise: str, ok: bool) -> None:
    """Record one checked answer in the progress file (a no-op when recording is off)."""
    path = progress_path()
    if path is None:
        return
    with _locked(path):
        state = record(load(path), lab, exercise, ok, datetime.datetime.now(datetime.UTC))
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, path)  # a crash mid-write never leaves half a file
