"""The agent loop as a LangGraph `StateGraph`.

    START → model ─┬─ tool call ──────────→ tools ─→ model
                   ├─ final message ──────→ validate ─┬─ valid ─→ END
                   │                                  └─ invalid (retries left) ─→ model
                   ├─ preamble / reasoning → model (the turn goes on)
                   └─ a limit reached ────→ END

The state (`engine.state`) holds only data (messages, counters, usage), so any LangGraph
checkpointer can save and resume a run by thread id. What cannot be checkpointed (the
model client, the tools, the trace recorder) is the graph's context, a `LoopRuntime`
(`engine.runtime`), given to each invocation.

Everything a node puts in the state is storable by every checkpointer (Postgres JSONB
included): messages clean themselves (`Message`), each node's update has its strings
cleaned (`state.storable`), tool results have NUL, lone surrogates and over-long runs of one
character handled before they are recorded, and the repeated-call key is a hash.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from harmonygraph.bounds import clean_text, loads_bounded
from harmonygraph.engine.events import (
    CommentaryDelta,
    FinalDelta,
    ReasoningDelta,
    StepDone,
    ToolCallEvent,
    ToolResultEvent,
)
from harmonygraph.engine.limits import RunStatus
from harmonygraph.engine.output import OutputInvalid
from harmonygraph.engine.runtime import LoopRuntime
from harmonygraph.engine.state import LoopState, storable
from harmonygraph.harmony.encoding import TextEncodingError, shorten_runs
from harmonygraph.harmony.messages import Message, Role
from harmonygraph.harmony.parser import ContentDelta, HarmonyParseError
from harmonygraph.models.base import ModelError, ModelRequest, ModelResponse, ResponseDone, Usage
from harmonygraph.tools.base import ToolOutput
from harmonygraph.tools.registry import ToolCall, ToolCallResult
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt

__all__ = ["build_agent_graph", "pending_call"]

Node = TypeVar("Node", bound=Callable[..., Any])


def storable_node(fn: Node) -> Node:
    """A node whose state update is made storable (`state.storable`) before LangGraph sees it."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(state: LoopState, runtime: Runtime[LoopRuntime]) -> dict[str, Any]:
            return storable(await fn(state, runtime))

        return cast(Node, run_async)

    @functools.wraps(fn)
    def run(state: LoopState, runtime: Runtime[LoopRuntime]) -> dict[str, Any]:
        return storable(fn(state, runtime))

    return cast(Node, run)


def _limit_reached(state: LoopState, rt: LoopRuntime) -> tuple[RunStatus, str] | None:
    lim = rt.limits
    if state.get("steps", 0) >= lim.max_steps:
        return "max_steps", f"the run reached its limit of {lim.max_steps} model steps"
    used = state.get("usage") or Usage()
    if used.total_tokens >= lim.max_tokens:
        return (
            "max_tokens",
            f"the run used {used.total_tokens} tokens, over its limit of {lim.max_tokens}",
        )
    if time.monotonic() - rt.started_at >= lim.max_wall_s:
        return "timeout", f"the run took longer than its limit of {lim.max_wall_s:g} s"
    return None


async def model_node(state: LoopState, runtime: Runtime[LoopRuntime]) -> dict[str, Any]:
    rt = runtime.context
    limit = _limit_reached(state, rt)
    if limit:
        return {"status": limit[0], "error": limit[1]}
    step = state.get("steps", 0) + 1
    request = ModelRequest(rt.system, rt.developer, tuple(state.get("messages", ())), rt.settings)
    if rt.spans is None:
        outcome = await _call_model(rt, request, step, runtime.stream_writer)
    else:
        with rt.spans.chat(request) as span:
            outcome = await _call_model(rt, request, step, runtime.stream_writer)
            if isinstance(outcome, ModelResponse):
                span.response(outcome)
            else:
                span.error(outcome["status"], outcome["error"])
    if not isinstance(outcome, ModelResponse):
        return outcome
    response = outcome
    rt.recorder.model_call(step, request, response)
    usage = (state.get("usage") or Usage()) + response.usage
    runtime.stream_writer(
        StepDone(
            step, response.usage.input_tokens, response.usage.output_tokens, response.latency_s
        )
    )
    return {
        "messages": list(response.messages),
        "steps": step,
        "usage": usage,
        "step_usage": [
            {"step": step, **response.usage.to_dict(), "latency_s": round(response.latency_s, 6)}
        ],
    }


async def _call_model(
    rt: LoopRuntime, request: ModelRequest, step: int, writer: Callable[[Any], None]
) -> ModelResponse | dict[str, Any]:
    """The model's response, or the state update that ends the run when the call failed."""
    remaining = rt.limits.max_wall_s - (time.monotonic() - rt.started_at)
    try:
        # asyncio.timeout, not wait_for: no extra task per step.
        async with asyncio.timeout(max(remaining, 0.001)):
            if rt.stream_model:
                return await _stream_model(rt, request, step, writer)
            return await rt.model.complete(request)
    except TimeoutError:
        return {
            "status": "timeout",
            "error": f"the model did not answer within the run's {rt.limits.max_wall_s:g} s",
        }
    except ModelError as exc:
        return {"status": "model_error", "error": str(exc)}
    except HarmonyParseError as exc:
        # A completion the codec cannot read ends the run like any model failure: the
        # conversation so far stays in the state, and the error says what was wrong.
        return {
            "status": "model_error",
            "error": f"{rt.model.name}: the completion is not valid harmony: {exc}",
        }
    except TextEncodingError as exc:
        # The conversation cannot be tokenized in bounded time (a run of one character
        # over the bound, in the input or the model's own earlier output).
        return {"status": "invalid_input", "error": f"the prompt cannot be encoded: {exc}"}


async def _stream_model(
    rt: LoopRuntime, request: ModelRequest, step: int, writer: Callable[[Any], None]
) -> ModelResponse:
    response: ModelResponse | None = None
    async for event in rt.model.stream(request):
        if isinstance(event, ContentDelta) and event.recipient is None:
            if event.channel == "analysis":
                writer(ReasoningDelta(step, event.delta))
            elif event.channel == "commentary":
                writer(CommentaryDelta(step, event.delta))
            elif event.channel in ("final", None):
                writer(FinalDelta(step, event.delta))
        elif isinstance(event, ResponseDone):
            response = event.response
    if response is None:
        raise ModelError(f"{rt.model.name}: the stream ended without a response")
    return response


async def route_after_model(state: LoopState) -> str:
    if state.get("status", "running") != "running":
        return END
    messages = state.get("messages", [])
    last = messages[-1] if messages else None
    if last is None:
        return "model"
    if last.is_tool_call:
        return "tools"
    if last.is_final or (
        last.role.value == "assistant" and last.channel is None and last.stop in ("end", "return")
    ):
        return "validate"
    return "model"  # reasoning or a preamble: the turn is not over


def _call_key(message: Message) -> str:
    """What identifies a call (recipient and arguments) for the repeated-call limit.

    A hash: it is kept in the state, and a key holding the arguments themselves would
    put model text (and any separator) into every checkpoint's inline JSON.
    """
    try:
        args = json.dumps(loads_bounded(message.content), sort_keys=True)
    except (ValueError, TypeError):  # not JSON, or nested too deep: the text itself
        args = message.content.strip()
    data = json.dumps([message.recipient, args])  # ASCII: escapes any character
    return hashlib.sha256(data.encode()).hexdigest()


def pending_call(messages: list[Message]) -> Message | None:
    """The first tool call of the last model turn that has no result yet.

    A chat endpoint may answer with several calls at once ([call 1, call 2]); each gets
    its result in order ([call 1, call 2, result 1, result 2]), one tools step each, so an
    approval interrupt or a checkpoint never re-runs a call that already ran.
    """
    i = len(messages)
    results = 0
    while i and messages[i - 1].role is Role.TOOL:
        i -= 1
        results += 1
    calls: list[Message] = []
    while i and messages[i - 1].is_tool_call:
        i -= 1
        calls.append(messages[i])
    calls.reverse()
    return calls[results] if results < len(calls) else None


async def tools_node(state: LoopState, runtime: Runtime[LoopRuntime]) -> dict[str, Any]:
    rt = runtime.context
    call_msg = pending_call(state["messages"])
    assert call_msg is not None and call_msg.recipient is not None
    step = state.get("steps", 0)
    if state.get("tool_calls", 0) >= rt.limits.max_tool_calls:
        return {
            "status": "max_tool_calls",
            "error": f"the run reached its limit of {rt.limits.max_tool_calls} tool calls",
        }
    key = _call_key(call_msg)
    repeat = state.get("repeat_count", 0) + 1 if key == state.get("repeat_key") else 1
    if repeat >= rt.limits.max_repeated_calls:
        return {
            "status": "repeated_tool_call",
            "error": f"the model called {call_msg.recipient} with the same arguments {repeat} times in a row",
        }
    call = ToolCall(call_msg.recipient, call_msg.content, call_msg.channel, call_msg.content_type)
    writer = runtime.stream_writer
    result: ToolCallResult
    if rt.registry.needs_approval(call.recipient):
        # Interrupt first: on resume the node runs again from the top, so nothing
        # before this line may have side effects.
        decision = interrupt({"recipient": call.recipient, "arguments": call.arguments})
        approved = decision is True or (
            isinstance(decision, dict) and decision.get("approved") is True
        )
        if not approved:
            reason = decision.get("reason", "") if isinstance(decision, dict) else ""
            text = f"error: the user did not approve this call to `{call.recipient}`" + (
                f": {reason}" if reason else ""
            )
            result = ToolCallResult(call, call.recipient, ToolOutput.error(text), "denied", 0.0)
            return _tool_update(rt, state, step, result, key, repeat, writer)
    writer(ToolCallEvent(step, call.recipient, call.arguments))
    if rt.spans is None:
        result = await rt.registry.call(call, rt.ctx)
    else:
        with rt.spans.tool(call.recipient, call.arguments, _is_builtin(rt, call.recipient)) as span:
            result = await rt.registry.call(call, rt.ctx)
            span.result(result)
    return _tool_update(rt, state, step, result, key, repeat, writer)


def _is_builtin(rt: LoopRuntime, recipient: str) -> bool:
    namespace = recipient.split(".", 1)[0]
    return any(ns.name == namespace for ns in rt.registry.builtin_namespaces())


def _tool_update(
    rt: LoopRuntime,
    state: LoopState,
    step: int,
    result: ToolCallResult,
    key: str,
    repeat: int,
    writer: Callable[[Any], None],
) -> dict[str, Any]:
    # The boundary where a tool's text enters the run: storable (no NUL, no lone
    # surrogate) and encodable in bounded time (over-long runs of one character cut),
    # the same in the trace, the event and the state.
    result.output.text = shorten_runs(clean_text(result.output.text))
    rt.recorder.tool_call(step, result)
    artifacts = [
        {k: clean_text(v) if isinstance(v, str) else v for k, v in a.to_dict().items()}
        for a in result.output.artifacts
    ]
    writer(
        ToolResultEvent(
            step,
            result.recipient,
            result.status,
            result.output.text,
            result.duration_s,
            tuple(artifacts),
        )
    )
    # The answer is authored by the recipient the model used, so the conversation reads
    # as the model expects: its call, then that tool's answer.
    message = Message.tool_result(result.call.recipient, result.output.text)
    return {
        "messages": [message],
        "tool_calls": state.get("tool_calls", 0) + 1,
        "artifacts": artifacts,
        "repeat_key": key,
        "repeat_count": repeat,
    }


async def validate_node(state: LoopState, runtime: Runtime[LoopRuntime]) -> dict[str, Any]:
    rt = runtime.context
    final = state["messages"][-1]
    if final.stop is None:
        # No <|return|>/<|end|>: generation stopped at max_tokens, mid-answer. A cut
        # answer is not an answer, even where it happens to parse.
        return {
            "status": "max_tokens",
            "error": "the final answer was cut off before it ended: the model reached its "
            "max_tokens; raise ModelSettings.max_tokens",
        }
    if rt.output is None:
        return {"status": "completed", "output": final.content}
    try:
        rt.output.validate(final.content)
    except OutputInvalid as exc:
        retries = state.get("output_retries", 0) + 1
        if retries > rt.limits.output_retries:
            return {
                "status": "invalid_output",
                "output_errors": exc.errors,
                "error": f"the final answer did not validate after {retries} attempts: {exc}",
            }
        fmt = rt.developer.response_format
        name = f" `{fmt.name}`" if fmt else ""
        feedback = Message.user(
            f"Your answer does not match the response format{name}: "
            + "; ".join(exc.errors)
            + ". Reply with only the corrected JSON object."
        )
        return {"messages": [feedback], "output_retries": retries, "output_errors": exc.errors}
    # An earlier attempt's errors are over (the feedback message keeps them in the trace).
    return {"status": "completed", "output": final.content, "output_errors": []}


async def route_after_validate(state: LoopState) -> str:
    return END if state.get("status", "running") != "running" else "model"


async def route_after_tools(state: LoopState) -> str:
    if state.get("status", "running") != "running":
        return END
    return "tools" if pending_call(state.get("messages", [])) else "model"


def build_agent_graph() -> StateGraph[LoopState, LoopRuntime, LoopState, LoopState]:
    """The loop's graph, uncompiled: compile it with the checkpointer of your choice."""
    graph = StateGraph(LoopState, context_schema=LoopRuntime)
    graph.add_node("model", storable_node(model_node))
    graph.add_node("tools", storable_node(tools_node))
    graph.add_node("validate", storable_node(validate_node))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", route_after_model, ["tools", "validate", "model", END])
    graph.add_conditional_edges("tools", route_after_tools, ["tools", "model", END])
    graph.add_conditional_edges("validate", route_after_validate, ["model", END])
    return graph
