"""harmonygraph: sandbox.

Stateful, isolated Python execution for the harmony `python` tool. `DockerSandbox` runs
each kernel in a locked-down container; `LocalSandbox` is a weaker subprocess fallback.
`SandboxPool` keeps kernels warm, with the scientific stack already imported.

    sandbox = get_sandbox()              # HARMONYGRAPH_SANDBOX=docker|local
    with SandboxPool(sandbox) as pool:
        session = pool.acquire_sync()
        print(session.execute_sync("1 + 1").render())
        session.close_sync()
"""

from .config import DEFAULT_IMAGE, SandboxConfig
from .docker_backend import DockerSandbox
from .errors import (
    DockerUnavailableError,
    ImageBuildError,
    ImageNotFoundError,
    KernelDiedError,
    SandboxCancelledError,
    SandboxClosedError,
    SandboxError,
    SandboxFileError,
    SandboxStartError,
    SandboxUnavailableError,
)
from .factory import SandboxChoice, choose_sandbox, get_sandbox
from .local_backend import LocalSandbox
from .pool import SandboxPool
from .results import ExecError, ExecResult, ExecStatus, SandboxFile
from .session import KernelProcess, Sandbox, SandboxSession

__all__ = [
    "DEFAULT_IMAGE",
    "DockerSandbox",
    "DockerUnavailableError",
    "ExecError",
    "ExecResult",
    "ExecStatus",
    "ImageBuildError",
    "ImageNotFoundError",
    "KernelDiedError",
    "KernelProcess",
    "LocalSandbox",
    "Sandbox",
    "SandboxCancelledError",
    "SandboxChoice",
    "SandboxClosedError",
    "SandboxConfig",
    "SandboxError",
    "SandboxFile",
    "SandboxFileError",
    "SandboxPool",
    "SandboxSession",
    "SandboxStartError",
    "SandboxUnavailableError",
    "choose_sandbox",
    "get_sandbox",
]
