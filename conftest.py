"""The checkout's bytecode, compiled once before any test starts a process.

A wheel install compiles the package at install time; an editable install in an environment that
forbids writing bytecode (PYTHONDONTWRITEBYTECODE) would make each of the hundreds of processes
the suite starts (every broker, controller and lab kernel) compile kafkalab from source again:
~0.2 s of CPU and ~3 MB of RSS each, which the labs' memory peaks would count."""

from __future__ import annotations

import compileall
from pathlib import Path

for _package in ("kafkalab", "widgets"):
    compileall.compile_dir(Path(__file__).parent / _package, quiet=1)
