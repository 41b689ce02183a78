"""Sandbox configuration: one typed model, filled from `HARMONYGRAPH_SANDBOX_*` env vars."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from harmonygraph.settings import harmonygraph_home
from pydantic import BaseModel, Field

from .files import TakeLimits

__all__ = ["DEFAULT_IMAGE", "SandboxConfig"]

DEFAULT_IMAGE = "harmonygraph-sandbox:0.1"
Backend = Literal["docker", "local"]


class SandboxConfig(BaseModel):
    """Limits and choices for sandboxed execution.

    Every field can be set from the environment as `HARMONYGRAPH_SANDBOX_<FIELD>`
    (upper case); the backend itself is `HARMONYGRAPH_SANDBOX` and the image
    `HARMONYGRAPH_SANDBOX_IMAGE`.
    """

    backend: Backend = "docker"
    image: str = DEFAULT_IMAGE
    memory_mb: int = Field(default=1024, ge=64, description="memory limit, swap included")
    cpus: float = Field(default=1.0, gt=0, description="CPU quota in cores")
    pids_limit: int = Field(default=128, ge=8, description="processes and threads in the sandbox")
    timeout_s: float = Field(default=30.0, gt=0, description="wall time per execution")
    interrupt_grace_s: float = Field(
        default=2.0, gt=0, description="wait after SIGINT on timeout before killing the kernel"
    )
    start_timeout_s: float = Field(
        default=60.0, gt=0, description="kernel start, preloads included"
    )
    max_output_chars: int = Field(
        default=20_000, ge=100, description="stdout/stderr kept per stream"
    )
    hard_output_chars: int = Field(
        default=8 * 1024 * 1024, ge=1000, description="printing beyond this stops the execution"
    )
    disk_mb: int = Field(default=256, ge=1, description="size of the writable /mnt/data")
    tmp_mb: int = Field(default=64, ge=1, description="size of the writable /tmp")
    max_file_mb: int = Field(default=32, ge=1, description="largest file copied out as an artifact")
    max_files: int = Field(
        default=100, ge=1, description="files copied out of /mnt/data per execution"
    )
    max_files_total_mb: int = Field(
        default=64, ge=1, description="bytes copied out of /mnt/data per execution"
    )
    max_entries: int = Field(
        default=5000, ge=10, description="entries of /mnt/data looked at per execution"
    )
    hard_deadline_margin_s: float = Field(
        default=5.0,
        gt=0,
        description="the supervisor in the sandbox stops a request this long after the "
        "host's own limit (timeout plus interrupt grace) has passed",
    )
    network: bool = Field(default=False, description="give the sandbox a network (off by default)")
    pool_size: int = Field(default=1, ge=0, description="warm kernels kept ready")
    # `scipy` alone imports next to nothing (its subpackages load on first use): the
    # statistics an analysis reaches for are `scipy.stats`, ~0.3-1 s to import on one CPU.
    preload: list[str] = Field(
        default_factory=lambda: [
            "numpy", "pandas", "matplotlib", "matplotlib.pyplot", "scipy", "scipy.stats",
        ],
        description="modules imported before a session takes a warm kernel",
    )  # fmt: skip
    local_python: str = Field(default="python3", description="interpreter for the local backend")
    local_bwrap: bool = Field(
        default=True, description="isolate the local backend with bwrap if found"
    )
    home: Path = Field(default_factory=harmonygraph_home)

    def take_limits(self) -> TakeLimits:
        return TakeLimits(
            max_files=self.max_files,
            max_bytes=self.max_files_total_mb * 1024 * 1024,
            max_file_bytes=self.max_file_mb * 1024 * 1024,
            max_entries=self.max_entries,
        )

    @classmethod
    def from_env(cls, **overrides: object) -> SandboxConfig:
        values: dict[str, object] = {}
        backend = os.environ.get("HARMONYGRAPH_SANDBOX")
        if backend:
            values["backend"] = backend.strip().lower()
        for name, field in cls.model_fields.items():
            raw = os.environ.get(f"HARMONYGRAPH_SANDBOX_{name.upper()}")
            if raw is None or name == "backend":
                continue
            if field.annotation is not None and "list" in str(field.annotation):
                values[name] = [m.strip() for m in raw.split(",") if m.strip()]
            else:
                values[name] = raw
        values.update(overrides)
        return cls.model_validate(values)
