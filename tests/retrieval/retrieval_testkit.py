"""Helpers of the retrieval tests (a uniquely named module: conftest names collide)."""

from __future__ import annotations

import importlib
import os
from typing import Any

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(module: str) -> Any:
    """Import `module`, or skip (fail under CI) when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if CI:
            pytest.fail(f"{module} is not installed but CI=true: install harmonygraph[all]: {exc}")
        pytest.skip(f"{module} is not installed")
