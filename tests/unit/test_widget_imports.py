"""What the notebook side loads for a Dashboard: plotly's widget without nbformat (and the
jsonschema machinery behind it, ~30 MB) until a figure is shown through a plotly renderer."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
from kafkalab.widgets import Dashboard
from kafkalab.widgets.base import LiveFigure
fig = LiveFigure([{"y": [1]}], {"height": 100}, {})
print("nbformat" in sys.modules, "jsonschema" in sys.modules)
import plotly.io._renderers as renderers
import nbformat
print(renderers.nbformat.__version__ == nbformat.__version__, bool(renderers.nbformat))
"""


def test_the_dashboard_imports_plotly_without_nbformat_and_the_renderer_still_finds_it():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["False False", "True True"]


def test_a_figure_shown_through_plotlys_renderer_gets_the_real_nbformat_check():
    # plotly reads nbformat.__version__ when it renders for a notebook: the stand-in must import it.
    code = ("import sys\nimport kafkalab.widgets.base as b\n"
            "b.go.Figure(data=[{'y': [1, 2]}]).show(renderer='notebook_connected')\n"
            "print('nbformat' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "True"
