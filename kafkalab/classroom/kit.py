"""Learner copies of the labs, and JupyterLab opened on them.

The labs ship inside the wheel (`kafkalab/labs/`); in a checkout they are the repository's `labs/`.
Their saved outputs are there for nbval and would give predictions away, so a learner gets a copy:
outputs and execution counts cleared, reference cells collapsed, nbgrader's markers removed, and
the checkers beside the notebooks (the notebooks import them from their own directory).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from kafkalab.classroom import nbgrader_meta

DEFAULT_DIR = "kafkalab-labs"
CHECKER_FILES = ("checkers.py", "lab*_checks.py")


def labs_source() -> Path:
    """The directory holding the shipped labs (installed wheel first, then a checkout)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "labs", package.parent / "labs"):
        if (candidate / "00_start_here.ipynb").is_file():
            return candidate
    raise FileNotFoundError(f"the labs are missing from this installation (looked in {package / 'labs'}); "
                            "reinstall with `pip install --force-reinstall 'kafka-internals-lab[labs]'`")


def notebooks(source: Path) -> list[Path]:
    return sorted(source.glob("[0-9][0-9]_*.ipynb"))


def checker_files(source: Path) -> list[Path]:
    return sorted(p for pattern in CHECKER_FILES for p in source.glob(pattern))


def learner_copy(nb) -> None:
    """Make a lab notebook safe to hand out (in place): nothing it ran before is left to read."""
    nbgrader_meta.strip(nb)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timestamps of the author's run
        if cell.cell_type != "code":
            continue
        cell.outputs = []
        cell.execution_count = None
        if "solution" in cell.metadata.get("tags", []):
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True


@dataclass(frozen=True)
class Written:
    written: list[Path]
    kept: list[Path]  # learner files already there, left alone


def write_labs(target: Path, *, force: bool = False, source: Path | None = None) -> Written:
    """Write learner copies of every lab and their checkers into `target`. A notebook already there
    is the learner's work and is kept unless `force`."""
    source = source or labs_source()
    target.mkdir(parents=True, exist_ok=True)
    written, kept = [], []
    for path in notebooks(source):
        dest = target / path.name
        if dest.exists() and not force:
            kept.append(dest)
            continue
        nb = nbformat.read(path, as_version=4)
        learner_copy(nb)
        nbformat.write(nb, dest)
        written.append(dest)
    for path in checker_files(source):
        # Checkers are ours, not the learner's: always the installed version.
        shutil.copyfile(path, target / path.name)
    return Written(written, kept)


def jupyter_command(directory: Path, extra: list[str], *, is_root: bool) -> list[str]:
    """The JupyterLab command line: rooted at the labs, opening lab 00, `--allow-root` when root
    (Jupyter refuses to start as root without it, which is the usual case in a container)."""
    extra = extra[1:] if extra[:1] == ["--"] else list(extra)
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={directory}"]
    if is_root and "--allow-root" not in extra:
        cmd.append("--allow-root")
    return cmd + extra


def open_lab(directory: Path, extra: list[str]) -> int:
    result = write_labs(directory)
    if result.written:
        print(f"kafkalab: wrote {len(result.written)} labs into {directory}", flush=True)
    os.execvp(sys.executable, jupyter_command(directory, extra, is_root=os.geteuid() == 0))
    return 0  # not reached: exec replaced this process
