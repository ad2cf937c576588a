"""Import plotly's widget serializer without numpy until something else imports numpy.

plotly's `serializers` module (behind every FigureWidget) imports numpy at import time only to
ask, for each value it sends to the browser, `isinstance(value, numpy.ndarray)`. The views send
plain lists, and numpy is ~15 MB resident in a learner's kernel. Before numpy is imported no
value can be an array, so the module gets a stand-in that answers that question without it and
is numpy itself once numpy is imported (a learner who plots arrays gets plotly's own handling).
Import this module before plotly's widget classes are first used.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


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


def _defer_numpy() -> None:
    if "plotly.serializers" in sys.modules or "numpy" in sys.modules:
        return  # already imported: nothing to save
    try:
        from _plotly_utils import optional_imports
        held_back: set[str] = optional_imports._not_importable
    except (ImportError, AttributeError):
        return  # another plotly: import as it does
    if "numpy" in held_back:
        return
    held_back.add("numpy")
    try:
        serializers = importlib.import_module("plotly.serializers")
    finally:
        held_back.discard("numpy")
    if getattr(serializers, "np", object()) is None:
        serializers.np = NumpyOnceImported()


_defer_numpy()

__all__ = ["NumpyOnceImported"]
