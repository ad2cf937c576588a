"""A live chart whose browser model gives up loading is never blank, and recovers.

anywidget gives each widget model 2 s to load its JavaScript; Plotly's is 5 MB, so on a
loaded machine a FigureWidget's model can miss that limit, and it then drops every message
from the kernel for good, while its view still draws the model's starting state. Here the
browser is made to give up on the first model at once (its 2 s limit becomes 1 ms), which is
what a slow machine does by chance: the chart must show its figure at once, and the kernel
must replace the deaf widget so the chart follows the data again.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from test_dashboard_browser import CHARTS_JS, expect_visible, run_all_cells, wait_js

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                       reason="chromium is not installed (apt-get install chromium)"),
]
pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

# The first anywidget model's load limit (AbortSignal.timeout(2000)) becomes 1 ms.
FIRST_MODEL_GIVES_UP = """
(() => {
  const timeout = AbortSignal.timeout.bind(AbortSignal);
  let first = true;
  AbortSignal.timeout = ms => {
    if (ms === 2000 && first) { first = false; window.kafkalabGaveUp = true; return timeout(1); }
    return timeout(ms);
  };
})();
"""

CELL = """\
import threading, time
from kafkalab.widgets.base import View

class Counter(View):
    def __init__(self):
        self.n = 0
        super().__init__(source=None)

    def figure_data(self):
        return {"data": [{"type": "bar", "x": ["n"], "y": [self.n], "name": "count"}],
                "layout": {"title": {"text": "counter"}}}

counter = Counter()

def count():
    while True:
        time.sleep(0.25)
        counter.n += 1
        counter.refresh()

threading.Thread(target=count, daemon=True).start()
counter.widget
"""

COUNT_JS = """
() => {
  const gd = document.querySelector('.jp-OutputArea-output .js-plotly-plot');
  return gd && gd.data && gd.data[0] ? gd.data[0].y[0] : null;
}
"""


def test_a_chart_whose_model_gave_up_shows_its_figure_and_recovers(jupyter_lab: Any,
                                                                    chromium_page: Any) -> None:
    page = chromium_page
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.add_init_script(FIRST_MODEL_GIVES_UP)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    nbformat.write(nb, Path(jupyter_lab.root) / "deaf.ipynb")
    page.goto(f"{jupyter_lab.url}/lab/tree/deaf.ipynb")
    expect_visible(page, page.locator(".jp-FileBrowser"), 120_000, "JupyterLab is up")
    run_all_cells(page)

    wait_js(page, f"({CHARTS_JS})().length === 1", 120_000, "the chart is drawn")
    # Drawn from the model's starting state: the figure, never an empty grid.
    [chart] = page.evaluate(CHARTS_JS)
    assert chart["title"] == "counter" and chart["traces"] == 1, chart
    assert page.evaluate("() => window.kafkalabGaveUp === true"), (
        "the browser did not give the model a 1 ms limit, so nothing was tested")
    first = page.evaluate(COUNT_JS)
    # The kernel replaces the deaf widget; the new one hears, and the count moves on.
    wait_js(page, f"({CHARTS_JS})().every(c => c.live)", 60_000,
            f"the deaf chart is replaced by one whose model hears the kernel ({page_errors})")
    wait_js(page, f"({COUNT_JS})() > {first} + 4", 30_000,
            f"the chart follows the count again (it showed {first} when first drawn)")
