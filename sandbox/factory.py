"""Choosing a backend from the configuration."""

from __future__ import annotations

from pathlib import Path

from .config import SandboxConfig
from .session import Sandbox

__all__ = ["get_sandbox"]


def get_sandbox(
    config: SandboxConfig | None = None,
    *,
    backend: str | None = None,
    session_dir: Path | None = None,
) -> Sandbox:
    """The configured sandbox: Docker unless `HARMONYGRAPH_SANDBOX=local` (or `backend`).

    The local backend is never chosen silently as a fallback: it is weaker, so it has to
    be asked for.
    """
    cfg = config or SandboxConfig.from_env()
    kind = backend or cfg.backend
    if kind == "docker":
        from .docker_backend import DockerSandbox

        return DockerSandbox(cfg)
    if kind == "local":
        from .local_backend import LocalSandbox

        return LocalSandbox(cfg, session_dir=session_dir)
    raise ValueError(f"unknown sandbox backend {kind!r}: use 'docker' or 'local'")
