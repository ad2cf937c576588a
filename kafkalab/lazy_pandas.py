"""`pd`: pandas, imported the first time an attribute is asked for.

`import kafkalab` and `Cluster(...)` stay free of pandas (a notebook kernel pays ~60 MB and a
third of a second for it) until a frame is built. Annotations are strings
(`from __future__ import annotations`), so `-> pd.DataFrame` costs nothing either.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule(ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # copy, pickle and introspection must not import it
        if self._module is None:
            self._module = importlib.import_module(self.__name__)
        return getattr(self._module, attr)


pd: Any = _LazyModule("pandas")
