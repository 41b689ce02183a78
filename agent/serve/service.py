"""Responses on top of `harmonygraph.engine.Agent`: one run per request.

- The served agent's own tools (python, browser, retrieval, `@tool`s) run on the server;
  the request's function `tools` are added as tools that need approval, so that a call to
  one stops the run there (the engine's interrupt) and the response ends with a
  `function_call` item. The client's `function_call_output` then comes back as the
  tool's result in the next request, which goes on from the previous response's messages.
- Every run is on its own LangGraph thread in the Postgres checkpointer, written once,
  when the run ends or stops for a client's function (`durability="exit"`: a response
  is answered only when its run ended, so the steps of a run in progress are nothing a
  client could continue from; one write a run instead of one a step). The checkpoint is
  committed without waiting for the disk; the response's own commit, after it, waits
  and so makes it durable too (`app.open_saver`). A follow-up request reads the
  messages of its previous response's thread and starts a new thread from them: any
  stored response can be continued (branches included), by any replica, after a restart.
- Reasoning (harmony's analysis channel) reaches the client only where the served
  agent's `show_reasoning` allows it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from harmonygraph.engine import (
    Agent,
    AgentRunError,
    CommentaryDelta,
    FinalDelta,
    ReasoningDelta,
    RunDone,
    RunResult,
    StepDone,
    build_agent_graph,
)
from harmonygraph.harmony.messages import Message
from harmonygraph.serve.errors import InvalidRequestError, NotFoundError
from harmonygraph.serve.protocol import (
    EFFORTS,
    ClientTool,
    CreateResponse,
    ItemIds,
    PendingCall,
    call_names_of,
    client_tools,
    message_item,
    new_id,
    output_items,
    output_schema,
    reasoning_item,
    response_object,
    to_messages,
    usage_object,
)
from harmonygraph.serve.store import ApiKey, ServeStore
from harmonygraph.tools.base import SchemaTool, ToolError, Toolset
from harmonygraph.tools.registry import ToolRegistry

__all__ = ["ClientToolCalledError", "Prepared", "ResponsesService", "ServedAgent"]

# A run's checkpoint is saved when it ends (see the module docstring).
RUN_DURABILITY: Literal["exit"] = "exit"


@dataclass
class ServedAgent:
    """An agent under a model name. `show_reasoning`: its reasoning may be sent to
    clients (and shown in the dashboard to keys allowed to see reasoning)."""

    name: str
    agent: Agent[Any]
    show_reasoning: bool = False
    description: str = ""


class ClientToolCalledError(ToolError):
    """A client-executed tool was run on the server: it never should be (it stops the run)."""


def _client_tool(t: ClientTool) -> SchemaTool:
    async def handler(args: dict[str, Any]) -> Any:
        raise ClientToolCalledError(f"{t.name} is executed by the client, not the server")

    return SchemaTool(t.name, t.description, t.parameters, handler, needs_approval=True)


@dataclass
class Prepared:
    """A request checked and resolved, ready to run."""

    req: CreateResponse
    key: ApiKey
    served: ServedAgent
    agent: Agent[Any]
    response_id: str
    thread_id: str
    history: list[Message]
    new: list[Message]
    effort: str | None
    created_at: float = field(default_factory=time.time)


class ResponsesService:
    """Runs requests against the served agents, keeping state in `store` and `saver`."""

    def __init__(
        self,
        agents: dict[str, ServedAgent],
        store: ServeStore,
        saver: Any,
        *,
        variants: int = 256,
    ) -> None:
        self.agents = agents
        self.store = store
        self.saver = saver
        self._variants: OrderedDict[tuple[Any, ...], Agent[Any]] = OrderedDict()
        self._max_variants = variants
        self._reader: Any = None

    # -- agents per request -----------------------------------------------------------
    def variant(
        self,
        served: ServedAgent,
        tools: list[ClientTool],
        instructions: str | None,
        schema: tuple[dict[str, Any], str] | None,
        max_tokens: int | None,
    ) -> Agent[Any]:
        """The served agent with this request's client tools, instructions, output
        schema and token limit, on the server's checkpointer (cached by those)."""
        key = (
            served.name,
            json.dumps([dataclasses.astuple(t) for t in tools], sort_keys=True),
            instructions,
            json.dumps(schema, sort_keys=True),
            max_tokens,
        )
        found = self._variants.get(key)
        if found is not None:
            self._variants.move_to_end(key)
            return found
        base = served.agent
        toolsets = list(base.registry.toolsets)
        if tools:
            own = next((ts for ts in toolsets if ts.namespace == "functions"), None)
            merged = Toolset(list(own.tools.values()) if own else [], namespace="functions")
            for t in tools:
                if t.name in merged.tools:
                    raise InvalidRequestError(
                        f"tools: {t.name!r} is the name of one of the agent's own tools",
                        param="tools",
                    )
                merged.add(_client_tool(t))
            toolsets = [merged, *(ts for ts in toolsets if ts.namespace != "functions")]
        registry = ToolRegistry(
            toolsets,
            default_timeout=base.registry.default_timeout,
            max_result_chars=base.registry.max_result_chars,
        )
        settings = base.settings
        if max_tokens is not None:
            settings = dataclasses.replace(settings, max_tokens=max_tokens)
        output_type: Any = base.output_type
        if schema is not None:
            output_type = schema[0]
        agent: Agent[Any] = Agent(
            base.model,
            registry,
            instructions=instructions if instructions is not None else base.instructions,
            reasoning=base.reasoning,
            output_type=output_type,
            name=base.name,
            identity=base.identity,
            knowledge_cutoff=base.knowledge_cutoff,
            current_date=base.current_date,
            limits=base.limits,
            settings=settings,
            checkpointer=self.saver,
            redact=base.redactor.secrets,
            prices=base.prices,
            artifacts_dir=base.artifacts_dir,
            deps=base.deps,
        )
        self._variants[key] = agent
        if len(self._variants) > self._max_variants:
            self._variants.popitem(last=False)
        return agent

    # -- a request, checked ---------------------------------------------------------------
    async def previous(self, response_id: str, key: ApiKey) -> dict[str, Any]:
        row = await self.store.get_response(response_id)
        # Another key's response is as unknown as a missing one.
        if row is None or row["key_id"] != key.id or not row["stored"]:
            raise NotFoundError(
                f"Previous response with id '{response_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        if row["status"] == "in_progress":
            raise InvalidRequestError(
                f"Previous response '{response_id}' is still in progress; wait for it to end.",
                param="previous_response_id",
            )
        return row

    async def thread_messages(self, thread_id: str) -> list[Message]:
        """A thread's messages, read through the loop's graph (whatever channels the
        engine keeps them in)."""
        if self._reader is None:
            self._reader = build_agent_graph().compile(checkpointer=self.saver)
        snapshot = await self._reader.aget_state({"configurable": {"thread_id": thread_id}})
        return list((snapshot.values or {}).get("messages", [])) if snapshot else []

    async def prepare(self, req: CreateResponse, key: ApiKey) -> Prepared:
        served = self.agents.get(req.model)
        if served is None:
            raise NotFoundError(
                f"The model '{req.model}' does not exist; GET /v1/models lists the agents "
                "served here.",
                param="model",
                code="model_not_found",
            )
        history: list[Message] = []
        call_names: dict[str, str] = {}
        if req.previous_response_id:
            row = await self.previous(req.previous_response_id, key)
            history = await self.thread_messages(row["thread_id"])
            call_names = call_names_of((row["response"] or {}).get("output", []))
        new, extra = to_messages(req.input, call_names)
        if not new and not history:
            raise InvalidRequestError("'input' is empty: give a message.", param="input")
        instructions = req.instructions
        if extra:
            instructions = "\n\n".join([*([instructions] if instructions else []), *extra])
        agent = self.variant(
            served, client_tools(req), instructions, output_schema(req), req.max_output_tokens
        )
        effort = EFFORTS[req.reasoning.effort] if req.reasoning and req.reasoning.effort else None
        rid = new_id("resp")
        return Prepared(req, key, served, agent, rid, rid, history, new, effort)

    async def begin(self, p: Prepared) -> None:
        preview = next((m.content for m in reversed(p.new) if m.role.value == "user"), "")
        if not preview and p.new:
            preview = f"[{p.new[-1].role.value}] {p.new[-1].content}"
        await self.store.start_response(
            response_id=p.response_id, key_id=p.key.id, agent=p.served.name,
            thread_id=p.thread_id, stored=p.req.store is not False, stream=bool(p.req.stream),
            previous_response_id=p.req.previous_response_id, created_at=p.created_at,
            input_preview=preview, request=p.req.model_dump(exclude_none=True),
        )  # fmt: skip

    # -- results ---------------------------------------------------------------------------
    def _pending(self, result: RunResult[Any]) -> PendingCall | None:
        if result.status != "awaiting_approval" or not result.interrupt:
            return None
        recipient = str(result.interrupt.get("recipient", ""))
        name = recipient.split(".", 1)[1] if recipient.startswith("functions.") else recipient
        return PendingCall(new_id("call"), name, str(result.interrupt.get("arguments", "")))

    def finish_object(
        self,
        p: Prepared,
        result: RunResult[Any] | None,
        ids: ItemIds | None = None,
        error: tuple[str, str] | None = None,
    ) -> tuple[dict[str, Any], str]:
        """The response object for a run's result (or failure), and its status."""
        status, incomplete, err = "completed", None, None
        output: list[dict[str, Any]] = []
        usage = None
        if result is not None:
            pending = self._pending(result)
            start = len(p.history) + len(p.new)
            final_text = None
            if result.status == "completed" and result.output is not None:
                out = result.output
                final_text = out if isinstance(out, str) else json.dumps(out, ensure_ascii=False)
            output = output_items(
                result.messages[start:], show_reasoning=p.served.show_reasoning,
                final_text=final_text, pending=pending, ids=ids,
            )  # fmt: skip
            reasoning_tokens = getattr(result.usage, "reasoning_tokens", 0) or 0
            usage = usage_object(
                result.usage.input_tokens, result.usage.output_tokens, reasoning_tokens
            )
            if result.status == "max_tokens":
                status, incomplete = "incomplete", "max_output_tokens"
            elif result.status in ("max_steps", "max_tool_calls", "timeout"):
                status, incomplete = "incomplete", str(result.status)
            elif result.status not in ("completed", "awaiting_approval"):
                status = "failed"
                err = {"code": _error_code(result.status), "message": result.error or result.status}
        if error is not None:
            status = "failed" if error[0] != "cancelled" else "cancelled"
            err = {"code": error[0], "message": error[1]}
        obj = response_object(
            response_id=p.response_id, model=p.served.name, created_at=p.created_at,
            status=status, output=output, req=p.req, usage=usage, error=err,
            incomplete=incomplete,
        )  # fmt: skip
        return obj, status

    async def record(
        self, p: Prepared, obj: dict[str, Any], status: str, result: RunResult[Any] | None
    ) -> None:
        timeline = _timeline(result) if result is not None else None
        usage = result.usage if result is not None else None
        await self.store.finish_response(
            p.response_id, status=status, duration_s=time.time() - p.created_at,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cost_usd=result.cost_usd if result is not None else None,
            response=obj, timeline=timeline,
            error=(obj.get("error") or {}).get("message"),
            # the run's trace, for replaying it (not kept for a request that asked `store: false`)
            trace=result.trace.records if result is not None and p.req.store is not False else None,
        )  # fmt: skip
        if p.req.store is False:
            await self.saver.adelete_thread(p.thread_id)

    # -- running -----------------------------------------------------------------------
    async def run(self, p: Prepared) -> dict[str, Any]:
        await self.begin(p)
        result: RunResult[Any] | None = None
        error: tuple[str, str] | None = None
        try:
            result = await p.agent.arun(
                p.new, thread_id=p.thread_id, reasoning=p.effort, message_history=p.history,
                durability=RUN_DURABILITY,
            )  # fmt: skip
        except AgentRunError as exc:
            result = exc.result
        except asyncio.CancelledError:
            await asyncio.shield(self._cancelled(p))
            raise
        except Exception as exc:  # a fault of the server: recorded, answered without a traceback
            error = ("server_error", f"{type(exc).__name__}: {exc}")
        obj, status = self.finish_object(p, result, error=error)
        await self.record(p, obj, status, result)
        return obj

    async def _cancelled(self, p: Prepared) -> None:
        obj, status = self.finish_object(
            p, None, error=("cancelled", "the client disconnected; the run was cancelled")
        )
        await self.record(p, obj, status, None)

    async def stream(self, p: Prepared) -> AsyncIterator[dict[str, Any]]:
        """The documented SSE events of one run, in order (each a dict with `type`)."""
        await self.begin(p)
        seq = 0

        def ev(kind: str, **data: Any) -> dict[str, Any]:
            nonlocal seq
            seq += 1
            return {"type": kind, "sequence_number": seq - 1, **data}

        base, _ = self.finish_object(p, None)
        base = {**base, "status": "in_progress", "completed_at": None}
        yield ev("response.created", response=base)
        yield ev("response.in_progress", response=base)
        ids = ItemIds()
        index = 0
        open_kind: str | None = None  # "reasoning" | "message"
        open_id = ""
        text = ""

        def close() -> list[dict[str, Any]]:
            nonlocal open_kind, index, text
            out: list[dict[str, Any]] = []
            part: dict[str, Any]
            if open_kind == "reasoning":
                part = {"type": "reasoning_text", "text": text}
                out.append(ev("response.reasoning_text.done", item_id=open_id,
                              output_index=index, content_index=0, text=text))  # fmt: skip
                out.append(ev("response.content_part.done", item_id=open_id, output_index=index,
                              content_index=0, part=part))  # fmt: skip
                out.append(ev("response.output_item.done", output_index=index,
                              item=reasoning_item(open_id, text)))  # fmt: skip
                index += 1
            elif open_kind == "message":
                part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                out.append(ev("response.output_text.done", item_id=open_id, output_index=index,
                              content_index=0, text=text, logprobs=[]))  # fmt: skip
                out.append(ev("response.content_part.done", item_id=open_id, output_index=index,
                              content_index=0, part=part))  # fmt: skip
                out.append(ev("response.output_item.done", output_index=index,
                              item=message_item(open_id, text)))  # fmt: skip
                index += 1
            open_kind, text = None, ""
            return out

        def open_item(kind: str) -> list[dict[str, Any]]:
            nonlocal open_kind, open_id
            out = close()
            open_kind = kind
            if kind == "reasoning":
                open_id = new_id("rs")
                ids.reasoning.append(open_id)
                item = {"type": "reasoning", "id": open_id, "summary": [], "content": [],
                        "status": "in_progress"}  # fmt: skip
                part: dict[str, Any] = {"type": "reasoning_text", "text": ""}
            else:
                open_id = new_id("msg")
                ids.messages.append(open_id)
                item = {**message_item(open_id, ""), "status": "in_progress", "content": []}
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(ev("response.output_item.added", output_index=index, item=item))
            out.append(ev("response.content_part.added", item_id=open_id, output_index=index,
                          content_index=0, part=part))  # fmt: skip
            return out

        result: RunResult[Any] | None = None
        error: tuple[str, str] | None = None
        finished = False
        try:
            try:
                async for event in p.agent.astream(
                    p.new, thread_id=p.thread_id, reasoning=p.effort, message_history=p.history,
                    durability=RUN_DURABILITY,
                ):  # fmt: skip
                    if isinstance(event, ReasoningDelta):
                        if not p.served.show_reasoning:
                            continue
                        if open_kind != "reasoning":
                            for e in open_item("reasoning"):
                                yield e
                        text += event.text
                        yield ev("response.reasoning_text.delta", item_id=open_id,
                                 output_index=index, content_index=0, delta=event.text)  # fmt: skip
                    elif isinstance(event, FinalDelta):
                        if open_kind != "message":
                            for e in open_item("message"):
                                yield e
                        text += event.text
                        yield ev("response.output_text.delta", item_id=open_id,
                                 output_index=index, content_index=0, delta=event.text,
                                 logprobs=[])  # fmt: skip
                    elif isinstance(event, StepDone | CommentaryDelta):
                        if isinstance(event, StepDone):
                            for e in close():
                                yield e
                    elif isinstance(event, RunDone):
                        result = event.result
            except AgentRunError as exc:
                result = exc.result
            except Exception as exc:  # recorded and sent as an error event, no traceback
                error = ("server_error", f"{type(exc).__name__}: {exc}")
            for e in close():
                yield e
            obj, status = self.finish_object(p, result, ids=ItemIds(), error=error)
            # The final object's items carry the ids the stream used.
            r_ids, m_ids = list(ids.reasoning), list(ids.messages)
            for item in obj["output"]:
                if item["type"] == "reasoning" and r_ids:
                    item["id"] = r_ids.pop(0)
                elif item["type"] == "message" and m_ids:
                    item["id"] = m_ids[-1]
                elif item["type"] == "function_call":
                    yield ev("response.output_item.added", output_index=index,
                             item={**item, "arguments": "", "status": "in_progress"})  # fmt: skip
                    yield ev("response.function_call_arguments.delta", item_id=item["id"],
                             output_index=index, delta=item["arguments"])  # fmt: skip
                    yield ev("response.function_call_arguments.done", item_id=item["id"],
                             output_index=index, arguments=item["arguments"], name=item["name"])  # fmt: skip
                    yield ev("response.output_item.done", output_index=index, item=item)
                    index += 1
            await self.record(p, obj, status, result)
            finished = True
            if status == "failed":
                yield ev("response.failed", response=obj)
            elif status == "incomplete":
                yield ev("response.incomplete", response=obj)
            else:
                yield ev("response.completed", response=obj)
        finally:
            if not finished:
                # The client went away (the generator was closed or cancelled): the run
                # was cancelled with it; record that, whatever cancels us next.
                await asyncio.shield(self._cancelled(p))


def _error_code(status: str) -> str:
    return {
        "model_error": "model_error",
        "invalid_output": "invalid_output",
        "invalid_input": "invalid_prompt",
        "checkpoint_error": "server_error",
        "repeated_tool_call": "repeated_tool_call",
    }.get(status, "server_error")


def _timeline(result: RunResult[Any]) -> list[dict[str, Any]]:
    """The run's steps for the dashboard: model turns and tool calls, from its trace."""
    out: list[dict[str, Any]] = []
    for rec in result.trace.records:
        kind = rec.get("type")
        if kind == "model_call":
            out.append({
                "type": "model", "step": rec.get("step"),
                "messages": [
                    {k: m.get(k) for k in ("role", "channel", "recipient", "content")}
                    for m in rec.get("messages", [])
                ],
                "usage": rec.get("usage", {}), "latency_s": rec.get("latency_s"),
                "finish_reason": rec.get("finish_reason"),
            })  # fmt: skip
        elif kind == "tool_call":
            res = str(rec.get("result", ""))
            out.append({
                "type": "tool", "step": rec.get("step"), "recipient": rec.get("recipient"),
                "arguments": rec.get("arguments"), "status": rec.get("status"),
                "result": res[:8000] + ("…" if len(res) > 8000 else ""),
                "duration_s": rec.get("duration_s"), "artifacts": rec.get("artifacts", []),
            })  # fmt: skip
    return out
