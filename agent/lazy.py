"""Packages whose public names load on first use, so importing a package stays cheap
(`harmonygraph --help` does not pull in LangGraph; the engine not the HTTP test server)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: each name in `table` is imported from its
    module (absolute, or relative to `package`) when first asked for."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where = module if module.startswith("harmonygraph") else f"{package}.{module}"
        return getattr(importlib.import_module(where), name)

    return __getattr__
