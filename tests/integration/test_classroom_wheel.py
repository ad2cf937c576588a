"""Installed from the wheel (not editable, not the checkout), `kafkalab labs DIR` writes learner
copies and lab 00 runs from that copy top to bottom.

Slow (a full pip install into a fresh virtual environment). Skipped, with the reason, when the
package index cannot be reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list, timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


def test_the_wheel_carries_the_labs_and_lab_00_runs_from_a_learner_copy(tmp_path):
    r = _run([sys.executable, "-m", "pip", "index", "versions", "pyzmq", "--timeout", "10",
              "--retries", "0", "--disable-pip-version-check"], timeout=60)
    if r.returncode != 0:
        pytest.skip("pip cannot reach the package index")

    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
              "-w", tmp_path / "dist", REPO], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("kafka_internals_lab-*.whl")

    venv = tmp_path / "venv"
    bin_ = venv / "bin"
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "JUPYTER_PATH", "JUPYTER_CONFIG_DIR")}
    env["PATH"] = f"{bin_}{os.pathsep}{env.get('PATH', '')}"
    env["JUPYTER_PATH"] = str(venv / "share" / "jupyter")  # the fresh kernel before any other
    env["KAFKALAB_PROGRESS"] = str(tmp_path / "progress.json")
    assert _run([sys.executable, "-m", "venv", venv], timeout=300).returncode == 0
    r = _run([bin_ / "python", "-m", "pip", "install", "--disable-pip-version-check",
              f"kafka-internals-lab[labs] @ {wheel.as_uri()}"], timeout=1200, cwd=tmp_path, env=env)
    assert r.returncode == 0, f"installing the wheel failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    r = _run([bin_ / "python", "-m", "ipykernel", "install", "--prefix", venv, "--name", "python3"],
             timeout=120, env=env)
    assert r.returncode == 0, r.stderr

    learner = tmp_path / "learner"
    r = _run([bin_ / "kafkalab", "labs", learner], timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    lab = learner / "00_start_here.ipynb"
    assert (learner / "lab00_checks.py").is_file() and (learner / "checkers.py").is_file()
    nb = nbformat.read(lab, as_version=4)
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")

    # Run the copy, plus one cell that says where the kernel's kafkalab came from.
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json, sys, kafkalab\nprint(json.dumps([sys.prefix, kafkalab.__file__]))"))
    nbformat.write(nb, lab)
    r = _run([bin_ / "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
              "--ExecutePreprocessor.timeout=300", "--ExecutePreprocessor.kernel_name=python3", lab],
             timeout=900, cwd=learner, env=env)
    assert r.returncode == 0, f"lab 00 failed from the wheel:\n{r.stderr[-5000:]}"
    done = nbformat.read(lab, as_version=4)
    errors = [o for c in done.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    last = "".join(o.get("text", "") for o in done.cells[-1].outputs if o.output_type == "stream")
    prefix, kafkalab_file = json.loads(last.strip().splitlines()[-1])
    assert Path(prefix) == venv and Path(kafkalab_file).is_relative_to(venv), (prefix, kafkalab_file)
