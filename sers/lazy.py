"""Packages whose names are imported on first use, so that their light modules load without torch."""
from __future__ import annotations

import importlib


def lazy_names(package: str, where: dict[str, str]):
    """(``__getattr__``, ``__dir__``) for ``package``: ``where`` maps each public name to the submodule
    that defines it (``{"load_upstream": "loading"}``), imported when the name is first asked for."""
    def __getattr__(name):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    def __dir__():
        return sorted(set(importlib.import_module(package).__dict__) | set(where))

    return __getattr__, __dir__
