"""Skip locally, fail under CI: what a test needs that an install may lack.

A developer without an extra installed gets a skip with the reason; CI (`CI=true`)
installs everything, so there a missing piece is a failure, never a silent skip.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, NoReturn

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip with `reason`, or fail with it under CI."""
    if IN_CI:
        pytest.fail(f"CI is set but {reason}: .ci/setup installs harmonygraph[all]")
    pytest.skip(reason)


def require(module: str) -> Any:
    """Import `module`, or skip (fail under CI) when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        unavailable(f"{module} is not installed ({exc})")
