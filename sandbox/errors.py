"""Sandbox errors: each says what went wrong and what to do about it."""

from __future__ import annotations

__all__ = [
    "DockerUnavailableError",
    "ImageBuildError",
    "ImageNotFoundError",
    "KernelDiedError",
    "SandboxCancelledError",
    "SandboxClosedError",
    "SandboxError",
    "SandboxFileError",
    "SandboxStartError",
    "SandboxUnavailableError",
]


class SandboxError(Exception):
    """Base class of every sandbox error."""


class SandboxUnavailableError(SandboxError):
    """The configured backend cannot run here (no engine, no image, no interpreter)."""


class DockerUnavailableError(SandboxUnavailableError):
    """No Docker engine answers, or the `docker` Python SDK is missing."""


class ImageNotFoundError(SandboxUnavailableError):
    """The sandbox image is not present in the Docker engine."""


class ImageBuildError(SandboxError):
    """Building the sandbox image failed."""


class SandboxStartError(SandboxError):
    """A kernel was started but did not report ready."""


class KernelDiedError(SandboxError):
    """The kernel process exited while the host was talking to it."""


class SandboxClosedError(SandboxError):
    """The session was used after `close()`."""


class SandboxCancelledError(SandboxStartError):
    """A kernel start was abandoned because its pool (or program) is shutting down."""


class SandboxFileError(SandboxError):
    """A file could not be taken out of the sandbox or written where it was to go."""
