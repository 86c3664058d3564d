"""Package faces that import their modules on first use: ``from retrieval.compress import X`` stays
cheap (no torch) until X is used. ``lazy_names(__name__, {"X": ".module"})`` returns the package's
``__getattr__``."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_names(package: str, names: dict[str, str]) -> Callable[[str], object]:
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = names[name].partition(":")
        value = getattr(importlib.import_module(module, package), attr or name)
        setattr(importlib.import_module(package), name, value)  # the next lookup is a plain attribute
        return value

    return __getattr__
