"""An nbgrader course's `source/` folder from the labs: one assignment per lab (`labNN`) holding
the notebook (with its nbgrader metadata), `checkers.py`, and the lab's checkers compiled to a
sourceless `labNN_checks.pyc` with docstrings stripped. The checkers compute the reference answers,
so students get them as bytecode and cannot read them. The students' kernels must run the same
Python minor version as the one that wrote the course, which is the case on a hub built from one
image.

    python -m kafkalab.classroom.course COURSE_DIR [NN ...]
    cd COURSE_DIR && nbgrader generate_assignment lab02
"""

from __future__ import annotations

import py_compile
import shutil
import sys
from pathlib import Path

from kafkalab.classroom import kit

NBGRADER_CONFIG = """c = get_config()
# nbgrader leaves *.pyc out of assignments by default; the labs' checkers are shipped as .pyc.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "__pycache__", "feedback"]
"""


def write_source(course: Path, labs: list[str] | None = None, *, source: Path | None = None) -> list[Path]:
    """Write `course/source/labNN/` for the given labs (default: all), and a `nbgrader_config.py`
    that lets the compiled checkers into the assignments unless the course has one; returns the
    assignment dirs."""
    source = source or kit.labs_source()
    config = course / "nbgrader_config.py"
    if not config.exists():
        course.mkdir(parents=True, exist_ok=True)
        config.write_text(NBGRADER_CONFIG)
    elif "CourseDirectory.ignore" not in config.read_text():
        print(f"note: {config} must set c.CourseDirectory.ignore without '*.pyc', or nbgrader "
              "leaves the checkers out of the assignments", file=sys.stderr)
    written = []
    for notebook in kit.notebooks(source):
        lab = notebook.name[:2]
        if labs is not None and lab not in labs:
            continue
        checks = source / f"lab{lab}_checks.py"
        if not checks.is_file():
            raise FileNotFoundError(f"{notebook.name} has no checkers ({checks.name} is missing)")
        folder = course / "source" / f"lab{lab}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(notebook, folder / notebook.name)
        shutil.copyfile(source / "checkers.py", folder / "checkers.py")
        (folder / checks.name).unlink(missing_ok=True)
        # optimize=2 drops docstrings (some explain the rule); the checkers assert nothing.
        py_compile.compile(str(checks), cfile=str(folder / f"lab{lab}_checks.pyc"), dfile=checks.name,
                           doraise=True, optimize=2)
        written.append(folder)
    if labs is not None and len(written) != len(labs):
        found = {p.name.removeprefix("lab") for p in written}
        raise ValueError(f"no lab numbered {sorted(set(labs) - found)}; the labs are "
                         f"{[p.name[:2] for p in kit.notebooks(source)]}")
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m kafkalab.classroom.course COURSE_DIR [NN ...]", file=sys.stderr)
        return 2
    try:
        folders = write_source(Path(args[0]), args[1:] or None)
    except (FileNotFoundError, ValueError) as e:
        print(f"kafkalab course: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(folders)} assignments into {Path(args[0]) / 'source'}: "
          f"{', '.join(p.name for p in folders)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
