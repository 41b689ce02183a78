"""What an execution gives back: typed, JSON-ready results."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["ExecError", "ExecResult", "ExecStatus", "SandboxFile"]

# ok: ran to the end; error: raised an exception; timeout: ran past the wall time;
# killed: the kernel died (out of memory, os._exit, killed); output_limit: printed too much.
ExecStatus = Literal["ok", "error", "timeout", "killed", "output_limit"]


@dataclass(frozen=True, slots=True)
class SandboxFile:
    """A file under /mnt/data that an execution created or changed, as the host read it.

    `path` is relative to /mnt/data and safe to show (control characters escaped, one
    line); `name` is the sanitised base name the host stored it under; `local_path` is
    the host's copy, valid until the session's next execution or its close.
    """

    path: str
    size: int
    mime_type: str = ""
    name: str = ""
    sha256: str = ""
    local_path: str = ""


@dataclass(frozen=True, slots=True)
class ExecError:
    """The exception an execution raised."""

    ename: str
    evalue: str
    traceback: str


@dataclass(slots=True)
class ExecResult:
    """Everything one execution produced, plus what happened to the session."""

    status: ExecStatus
    stdout: str = ""
    stderr: str = ""
    value: str | None = None
    error: ExecError | None = None
    files: list[SandboxFile] = field(default_factory=list)
    duration_ms: float = 0.0
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    # True when the kernel was replaced: variables, imports and /mnt/data files are gone.
    restarted: bool = False
    state_lost: bool = False
    # A plain-language account of a timeout, a kill or a restart, for the model.
    note: str = ""
    # Entries of /mnt/data that were not copied out, and why (links, FIFOs, caps).
    files_skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        """The text a model reads: output, then the value or traceback, then notes."""
        parts: list[str] = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
            if self.stdout_truncated:
                parts.append("[stdout truncated]")
        if self.stderr:
            parts.append(self.stderr.rstrip("\n"))
            if self.stderr_truncated:
                parts.append("[stderr truncated]")
        if self.error is not None and self.status in ("error", "output_limit"):
            parts.append(self.error.traceback.rstrip("\n"))
        elif self.value is not None:
            parts.append(self.value)
        if self.note:
            parts.append(self.note)
        parts += [f"[not copied: {why}]" for why in self.files_skipped]
        return "\n".join(parts)
