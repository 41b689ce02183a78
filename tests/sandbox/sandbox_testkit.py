"""Helpers shared by the sandbox tests."""

from __future__ import annotations

import os
from typing import Any

from harmonygraph.sandbox import SandboxConfig, SandboxSession

# Code that catches KeyboardInterrupt: a timeout's SIGINT cannot stop it, so the
# session has to be restarted. The outer loop catches an interrupt landing between tries.
SWALLOW_INTERRUPTS = (
    "while True:\n"
    "    try:\n"
    "        while True:\n"
    "            pass\n"
    "    except BaseException:\n"
    "        pass\n"
)


def sandbox_config(**overrides: Any) -> SandboxConfig:
    """Small limits so each hostile case ends quickly; no preloads unless a test asks."""
    base: dict[str, Any] = {
        "backend": "docker",
        "image": os.environ.get("HARMONYGRAPH_SANDBOX_IMAGE", "harmonygraph-sandbox:0.1"),
        "timeout_s": 3.0,
        "interrupt_grace_s": 1.5,
        "memory_mb": 384,
        "pids_limit": 64,
        "disk_mb": 16,
        "tmp_mb": 16,
        "max_output_chars": 5_000,
        "hard_output_chars": 2_000_000,
        "pool_size": 1,
        "preload": [],
    }
    base.update(overrides)
    return SandboxConfig(**base)


def container_of(session: SandboxSession) -> Any:
    """The Docker container behind a session (for inspecting limits and clean-up)."""
    return session.kernel.container  # type: ignore[attr-defined]
