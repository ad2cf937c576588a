"""Import plotly's FigureWidget without nbformat until a figure is shown through a renderer.

plotly's widget module imports `plotly.io._renderers`, which imports nbformat at import time
(and with it jsonschema and its specifications: ~30 MB resident) only to check nbformat's
version when a figure is displayed with `fig.show()`'s notebook renderer. A learner's Dashboard
never does that, and 30 MB is a tenth of what one learner costs a classroom server. So the
renderer module is imported with nbformat held back, and then given a stand-in that imports
nbformat the first time the renderer reads it: `fig.show()` behaves exactly as before.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


class NbformatOnFirstUse:
    """Stands for the nbformat module in plotly's renderer module; imports it when read."""

    def __bool__(self) -> bool:
        return importlib.util.find_spec("nbformat") is not None

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("nbformat"), name)


def _defer_nbformat() -> None:
    if "plotly.io._renderers" in sys.modules or "nbformat" in sys.modules:
        return  # already imported (the learner used plotly first): nothing to save
    try:
        from _plotly_utils import optional_imports
        held_back: set[str] = optional_imports._not_importable
    except (ImportError, AttributeError):
        return  # another plotly: import as it does
    if "nbformat" in held_back:
        return
    held_back.add("nbformat")
    try:
        renderers = importlib.import_module("plotly.io._renderers")
    finally:
        held_back.discard("nbformat")
    if getattr(renderers, "nbformat", object()) is None:
        renderers.nbformat = NbformatOnFirstUse()


_defer_nbformat()

import plotly.graph_objects as go  # noqa: E402  (after the deferral, on purpose)

__all__ = ["NbformatOnFirstUse", "go"]
