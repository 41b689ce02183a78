"""Shared by the report tests: where the example survey is, and optional imports."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "survey"


def require(module: str) -> Any:
    """Import `module`, or skip (fail under CI, where a skip would hide an untested part)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if CI:
            pytest.fail(f"{module} is not installed but CI=true: install harmonygraph[all]: {exc}")
        pytest.skip(f"{module} is not installed")
