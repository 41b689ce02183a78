"""Choosing a backend from the configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import SandboxConfig
from .session import Sandbox

__all__ = ["SandboxChoice", "choose_sandbox", "get_sandbox"]


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


@dataclass(frozen=True, slots=True)
class SandboxChoice:
    """The sandbox chosen, how to describe it, and why Docker was not (None when it was)."""

    sandbox: Sandbox
    description: str
    fallback_reason: str | None = None


def choose_sandbox(*, fallback_to_local: bool = False) -> SandboxChoice:
    """The configured sandbox, checked: Docker answers and has the image.

    `HARMONYGRAPH_SANDBOX` set: that backend, unchecked, no fallback. Otherwise Docker; when
    it cannot be used, the local backend only if the caller asked for it with
    `fallback_to_local` (the demo does, to run anywhere), and the choice carries the reason
    so the caller says it out loud. Without it, the Docker error is raised as it is.
    Blocking (it talks to the engine): call it through a thread from async code.
    """
    config = SandboxConfig.from_env()
    if os.environ.get("HARMONYGRAPH_SANDBOX"):
        return SandboxChoice(
            get_sandbox(config), f"{config.backend} sandbox (HARMONYGRAPH_SANDBOX)"
        )
    from .docker_backend import DockerSandbox

    docker = DockerSandbox(config)
    try:
        docker.check()
    except Exception as exc:  # no engine, no image, no permission, no SDK
        if not fallback_to_local:
            raise
        from .local_backend import LocalSandbox

        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        local = LocalSandbox(config.model_copy(update={"backend": "local"}))
        return SandboxChoice(
            local, f"LOCAL sandbox, not Docker ({reason}): weaker isolation", reason
        )
    return SandboxChoice(docker, "Docker sandbox")
