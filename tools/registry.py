"""Dispatch of the model's tool calls to the tools a run offers.

Every way a call can go wrong (an unknown recipient, arguments that do not parse or
validate, a tool that raises or runs too long, a result too large) becomes the tool's
answer to the model, short and specific, so it can correct itself; the run goes on.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harmonygraph.tools.base import (
    ArgumentError,
    FunctionTool,
    Tool,
    ToolContext,
    ToolError,
    ToolOutput,
    Toolset,
)
from openai_harmony import ToolNamespaceConfig

__all__ = ["CallStatus", "ToolCall", "ToolCallResult", "ToolRegistry"]

CallStatus = Literal["ok", "error", "invalid_arguments", "unknown_tool", "timeout", "denied"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    recipient: str
    arguments: str
    channel: str | None = None
    content_type: str | None = None


@dataclass(slots=True)
class ToolCallResult:
    call: ToolCall
    recipient: str  # the resolved recipient (e.g. `functions.add` for a bare `add`)
    output: ToolOutput
    status: CallStatus
    duration_s: float
    truncated: bool = False


class ToolRegistry:
    """The toolsets of one agent, resolved by recipient."""

    def __init__(
        self,
        toolsets: Iterable[Toolset],
        *,
        default_timeout: float = 60.0,
        max_result_chars: int = 20_000,
    ) -> None:
        self.toolsets: list[Toolset] = []
        seen: set[str] = set()
        for ts in toolsets:
            if ts.namespace in seen:
                raise ValueError(f"two toolsets use the namespace {ts.namespace!r}: merge them")
            seen.add(ts.namespace)
            self.toolsets.append(ts)
        self.default_timeout = default_timeout
        self.max_result_chars = max_result_chars

    @classmethod
    def from_items(
        cls, items: Sequence[Tool | Toolset | Callable[..., Any]], **kwargs: Any
    ) -> ToolRegistry:
        """Group loose tools into the `functions` namespace; keep toolsets as they are."""
        toolsets: list[Toolset] = []
        functions = Toolset()
        for item in items:
            if isinstance(item, Toolset):
                if item.namespace == "functions":
                    for t in item.tools.values():
                        functions.add(t)
                else:
                    toolsets.append(item)
            else:
                functions.add(item if isinstance(item, Tool) else FunctionTool(item))
        if functions.tools:
            toolsets.insert(0, functions)
        return cls(toolsets, **kwargs)

    # -- what the model is offered -------------------------------------------------
    def builtin_namespaces(self) -> tuple[ToolNamespaceConfig, ...]:
        return tuple(ts.namespace_config() for ts in self.toolsets if ts.builtin)

    def function_namespaces(self) -> tuple[ToolNamespaceConfig, ...]:
        return tuple(ts.namespace_config() for ts in self.toolsets if not ts.builtin)

    def recipients(self) -> list[str]:
        return [r for ts in self.toolsets for r in ts.recipients()]

    def resolve(self, recipient: str) -> tuple[str, Tool] | None:
        """The tool a recipient names. A bare `add` finds `functions.add` when unique."""
        for ts in self.toolsets:
            tool = ts.resolve(recipient)
            if tool is not None:
                return recipient, tool
        if "." not in recipient:
            found = [
                (f"{ts.namespace}.{recipient}", ts.tools[recipient])
                for ts in self.toolsets
                if not ts.builtin and recipient in ts.tools
            ]
            if len(found) == 1:
                return found[0]
        return None

    def _unknown(self, recipient: str) -> str:
        ns = recipient.split(".", 1)[0]
        if ns in ("browser", "python") and not any(ts.namespace == ns for ts in self.toolsets):
            return f"error: the {ns} tool is not available in this conversation; answer without it"
        offered = ", ".join(self.recipients()) or "none"
        return f"error: unknown tool `{recipient}`; the tools you can call are: {offered}"

    # -- calling ----------------------------------------------------------------------
    def needs_approval(self, recipient: str) -> bool:
        found = self.resolve(recipient)
        return bool(found and found[1].needs_approval)

    async def call(self, call: ToolCall, ctx: ToolContext) -> ToolCallResult:
        started = time.perf_counter()
        found = self.resolve(call.recipient)
        if found is None:
            return self._result(
                call,
                call.recipient,
                ToolOutput.error(self._unknown(call.recipient)),
                "unknown_tool",
                started,
            )
        recipient, tool = found
        try:
            args = tool.validate(call.arguments)
        except ArgumentError as exc:
            text = f"error: invalid arguments for `{recipient}`: {exc}"
            return self._result(
                call, recipient, ToolOutput.error(text), "invalid_arguments", started
            )

        timeout = tool.timeout if tool.timeout is not None else self.default_timeout
        try:
            output = await asyncio.wait_for(tool.invoke(args, ctx), timeout=timeout)
        except TimeoutError:
            text = f"error: `{recipient}` did not finish within {timeout:g} s and was " + (
                "cancelled" if tool.cancellable else "abandoned (its result will be ignored)"
            )
            return self._result(call, recipient, ToolOutput.error(text), "timeout", started)
        except ArgumentError as exc:
            text = f"error: invalid arguments for `{recipient}`: {exc}"
            return self._result(
                call, recipient, ToolOutput.error(text), "invalid_arguments", started
            )
        except ToolError as exc:
            return self._result(
                call, recipient, ToolOutput.error(f"error: {str(exc)[:2000]}"), "error", started
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool's bug must not end the run: the model hears of it
            where = traceback.extract_tb(exc.__traceback__)[-1]
            text = f"error: `{recipient}` raised {type(exc).__name__}: {str(exc)[:500]}"
            output = ToolOutput.error(
                text, exception=type(exc).__name__, at=f"{where.filename}:{where.lineno}"
            )
            return self._result(call, recipient, output, "error", started)
        return self._result(
            call, recipient, output, "error" if output.is_error else "ok", started, produced=True
        )

    def _result(
        self,
        call: ToolCall,
        recipient: str,
        output: ToolOutput,
        status: CallStatus,
        started: float,
        *,
        produced: bool = False,
    ) -> ToolCallResult:
        truncated = False
        limit = self.max_result_chars
        # Only what a tool produced is cut; our own error lines are short already.
        if produced and len(output.text) > limit:
            dropped = len(output.text) - limit
            output.text = (
                output.text[:limit]
                + f"\n…[truncated: {dropped} more characters not shown; ask for less]"
            )
            truncated = True
        return ToolCallResult(
            call, recipient, output, status, time.perf_counter() - started, truncated
        )

    async def start(self, ctx: ToolContext) -> None:
        for ts in self.toolsets:
            await ts.start(ctx)

    async def close(self, ctx: ToolContext) -> None:
        errors = []
        for ts in reversed(self.toolsets):
            try:
                await ts.close(ctx)
            except Exception as exc:  # close every toolset even if one fails
                errors.append(f"{ts.namespace}: {exc}")
        if errors:
            raise ToolError("closing toolsets failed: " + "; ".join(errors))

    def prepare(self) -> None:
        for ts in self.toolsets:
            ts.prepare()

    async def aclose(self) -> None:
        for ts in reversed(self.toolsets):
            await ts.aclose()
