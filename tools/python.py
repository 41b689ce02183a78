"""The harmony built-in `python` tool, backed by a warm, stateful sandbox session per run.

gpt-oss sends code as the message body to the recipient `python` and reads back what a
notebook cell would show: output, then the value of the last expression, or a
traceback. Files the code writes under /mnt/data (charts included) are copied into the
run's artifacts directory so reports can embed them, and named in the text so the model
can refer to them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from harmonygraph.concurrency import run_in_thread
from harmonygraph.sandbox import (
    ExecResult,
    Sandbox,
    SandboxConfig,
    SandboxError,
    SandboxFileError,
    SandboxPool,
    SandboxSession,
    get_sandbox,
)
from harmonygraph.sandbox.files import publish
from harmonygraph.tools.base import Artifact, Tool, ToolContext, ToolOutput, Toolset
from openai_harmony import ToolNamespaceConfig

__all__ = ["STATE_KEY", "PythonTool", "PythonToolset", "python_description"]

log = logging.getLogger(__name__)

STATE_KEY = "python"


def python_description(config: SandboxConfig) -> str:
    """Harmony's built-in description, with the facts of this sandbox filled in."""
    internet = "enabled" if config.network else "disabled"
    return (
        "Use this tool to execute Python code in your chain of thought. The code will not be "
        "shown to the user. This tool should be used for internal reasoning, but not for code "
        "that is intended to be visible to the user (e.g. when creating plots, tables, or "
        "files).\n\n"
        "When you send a message containing Python code to python, it will be executed in a "
        "stateful Jupyter notebook environment. python will respond with the output of the "
        f"execution or time out after {config.timeout_s:g} seconds. The drive at '/mnt/data' "
        "can be used to save and persist user files; files written there (and matplotlib "
        "figures left open at the end of a cell, saved as PNG) are kept for the user. "
        f"Internet access for this session is {internet}. numpy, pandas, matplotlib and scipy "
        "are installed."
    )


class _RunState:
    """What one run holds: its session, or why it has none."""

    def __init__(self, session: SandboxSession | None, error: str | None = None) -> None:
        self.session = session
        self.error = error
        self.saved: dict[str, str] = {}  # sandbox path -> sha256 of the copy already saved


class PythonTool(Tool):
    """`python`: the message body is the code."""

    def __init__(self, toolset: PythonToolset) -> None:
        cfg = toolset.config
        # Longer than the sandbox's own limit, so the sandbox reports the timeout (and
        # restarts the kernel) before the registry gives up on the call.
        budget = cfg.timeout_s + cfg.interrupt_grace_s + cfg.start_timeout_s + 10
        super().__init__(
            "python",
            python_description(cfg),
            None,
            input_kind="text",
            timeout=budget,
        )
        self.toolset = toolset

    async def invoke(self, args: Any, ctx: ToolContext) -> ToolOutput:
        return await self.toolset.run(str(args), ctx)


class PythonToolset(Toolset):
    """The built-in `python` namespace. One sandbox session per run, taken from a warm pool."""

    builtin = True

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        sandbox: Sandbox | None = None,
        pool: SandboxPool | None = None,
        max_output_chars: int = 16_000,
    ) -> None:
        super().__init__(namespace="python")
        self.config = config or (sandbox.config if sandbox else SandboxConfig.from_env())
        self._sandbox = sandbox
        self._pool = pool
        self.max_output_chars = max_output_chars
        self.add(PythonTool(self))

    # -- harmony plumbing -------------------------------------------------------------
    def resolve(self, recipient: str) -> Tool | None:
        # gpt-oss addresses the built-in as plain `python`; accept `python.<anything>` too.
        if recipient == "python" or recipient.startswith("python."):
            return self.tools["python"]
        return None

    def recipients(self) -> list[str]:
        return ["python"]

    def namespace_config(self) -> ToolNamespaceConfig:
        base = ToolNamespaceConfig.python()
        return ToolNamespaceConfig(
            name=base.name, description=python_description(self.config), tools=[]
        )

    # -- resources ----------------------------------------------------------------------
    @property
    def pool(self) -> SandboxPool:
        if self._pool is None:
            self._sandbox = self._sandbox or get_sandbox(self.config)
            self._pool = SandboxPool(self._sandbox)
        return self._pool

    async def warm(self) -> None:
        """Start filling the pool now, before the first run needs a session."""
        await self.pool.start()

    def prepare(self) -> None:
        # The agent is built: warm kernels start now, so its first run does not wait
        # for a container start and the scientific imports.
        try:
            self.pool.start_sync()
        except SandboxError as exc:  # the first run says why, in the tool's answer
            log.info("python sandbox not warmed: %s", exc)

    async def start(self, ctx: ToolContext) -> None:
        try:
            session = await self.pool.acquire()
        except SandboxError as exc:
            # The run goes on without Python; each call says why.
            log.warning("python tool unavailable: %s", exc)
            ctx.state[STATE_KEY] = _RunState(None, str(exc))
            return
        ctx.state[STATE_KEY] = _RunState(session)

    async def close(self, ctx: ToolContext) -> None:
        state = ctx.state.pop(STATE_KEY, None)
        if isinstance(state, _RunState) and state.session is not None:
            await state.session.close()

    async def aclose(self) -> None:
        """Stop the warm pool (kernels of runs still open are closed by `close`)."""
        if self._pool is not None:
            await self._pool.close()

    # -- the call ---------------------------------------------------------------------
    async def run(self, code: str, ctx: ToolContext) -> ToolOutput:
        state = ctx.state.get(STATE_KEY)
        if not isinstance(state, _RunState) or (state.session is None and state.error is None):
            await self.start(ctx)
            state = ctx.state[STATE_KEY]
        assert isinstance(state, _RunState)
        if state.session is None:
            return ToolOutput.error(
                f"error: the python tool is unavailable in this run: {state.error}"
            )
        if not code.strip():
            return ToolOutput.error("error: the message was empty; send Python code to run")
        try:
            result = await state.session.execute(code)
        except SandboxError as exc:
            return ToolOutput.error(f"error: the sandbox failed: {exc}")
        if result.state_lost:
            state.saved.clear()
        artifacts, notes = await self._collect(state, result, ctx)
        return ToolOutput(
            text=self._text(result, notes),
            is_error=result.status != "ok",
            artifacts=artifacts,
            metadata={
                "status": result.status,
                "duration_ms": round(result.duration_ms, 2),
                "restarted": result.restarted,
                "state_lost": result.state_lost,
                "session": state.session.id,
                "backend": state.session.backend,
                "files": [f.path for f in result.files],
            },
        )

    def _text(self, result: ExecResult, notes: list[str]) -> str:
        body = result.render()
        limit = self.max_output_chars
        if len(body) > limit:
            cut = len(body) - limit
            body = body[: limit // 2] + f"\n... [{cut} characters cut] ...\n" + body[-limit // 2 :]
        parts = [body] if body else []
        parts += notes
        return "\n".join(parts) if parts else "(no output)"

    async def _collect(
        self, state: _RunState, result: ExecResult, ctx: ToolContext
    ) -> tuple[list[Artifact], list[str]]:
        # The files were read out of /mnt/data by the host itself (never as the kernel
        # reported them) into the session's staging folder, under sanitised names; here
        # each is copied into the run's artifacts folder without overwriting anything.
        if not result.files or state.session is None:
            return [], []
        out_dir = Path(ctx.artifacts_dir) / "python"
        artifacts: list[Artifact] = []
        notes: list[str] = []
        for f in result.files:
            where = f"/mnt/data/{f.path}"  # display-safe: one line, control chars escaped
            if not f.local_path:
                continue
            if state.saved.get(f.path) == f.sha256:
                continue
            try:
                dest = await run_in_thread(publish, Path(f.local_path), out_dir, f.name)
            except SandboxFileError as exc:
                notes.append(f"[file {where}: not kept: {exc}]")
                continue
            state.saved[f.path] = f.sha256
            artifacts.append(
                Artifact(
                    path=dest,
                    mime_type=f.mime_type or "application/octet-stream",
                    source=f"python:{where}",
                    description=f"file written by the python tool at {where}",
                )
            )
            # No byte size: it differs between matplotlib builds and would make replays of
            # the same analysis differ on a detail the model never needs.
            notes.append(f"[file saved: {where} ({f.mime_type or 'unknown type'})]")
        return artifacts, notes
