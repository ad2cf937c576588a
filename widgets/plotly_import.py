"""Import plotly's FigureWidget without nbformat and numpy until they are really used.

Two plotly modules behind every FigureWidget import a heavy dependency at import time for a
question asked later, if ever:
- `plotly.io._renderers` imports nbformat (and with it jsonschema and its specifications:
  ~20 MB resident) only to check nbformat's version when `fig.show()` renders for a notebook,
  which a learner's Dashboard never does;
- `plotly.serializers` imports numpy (~15 MB) only to ask, for each value it sends to the
  browser, `isinstance(value, numpy.ndarray)`; the views send plain lists, and before numpy is
  imported no value can be an array.
Each module is imported with its dependency held back (plotly's own list of optional imports
that failed), then given a stand-in that becomes the real module when it is needed: `fig.show()`
and a learner's numpy arrays behave exactly as before. A few tens of MB are a large share of
what one learner costs a classroom server.
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


class _NoArray:
    """No value is an instance: numpy is not imported, so nothing is an ndarray."""


class NumpyOnceImported:
    """Stands for numpy in plotly's serializer module; numpy itself once it is imported."""

    def __getattr__(self, name: str) -> Any:
        numpy = sys.modules.get("numpy")
        if numpy is None:
            if name == "ndarray":
                return _NoArray
            numpy = importlib.import_module("numpy")
        return getattr(numpy, name)


def _import_holding_back(module: str, dependency: str, attr: str, stand_in: object) -> None:
    """Import `module` while plotly treats `dependency` as not importable, then put `stand_in`
    where the module keeps it (`module.attr`, None after such an import)."""
    if module in sys.modules or dependency in sys.modules:
        return  # already imported (the learner used plotly or numpy first): nothing to save
    try:
        from _plotly_utils import optional_imports
        held_back: set[str] = optional_imports._not_importable
    except (ImportError, AttributeError):
        return  # another plotly: import as it does
    if dependency in held_back:
        return
    held_back.add(dependency)
    try:
        imported = importlib.import_module(module)
    finally:
        held_back.discard(dependency)
    if getattr(imported, attr, object()) is None:
        setattr(imported, attr, stand_in)


_import_holding_back("plotly.serializers", "numpy", "np", NumpyOnceImported())
_import_holding_back("plotly.io._renderers", "nbformat", "nbformat", NbformatOnFirstUse())

import plotly.graph_objects as go  # noqa: E402  (after the deferrals, on purpose)

__all__ = ["NbformatOnFirstUse", "NumpyOnceImported", "go"]
