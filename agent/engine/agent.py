"""The `Agent` facade: one object to configure, run, stream, chat with and replay."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypedDict, TypeVar, Unpack, cast

from harmonygraph.concurrency import iterate_sync, run_sync
from harmonygraph.engine.checkpoint import CheckedSaver, CheckpointWriteError, memory_saver
from harmonygraph.engine.events import AgentEvent, RunDone, ToolCallEvent
from harmonygraph.engine.limits import RunLimits
from harmonygraph.engine.loop import build_agent_graph
from harmonygraph.engine.output import OutputSpec
from harmonygraph.engine.pricing import Price, estimate_cost
from harmonygraph.engine.result import (
    AgentCheckpointError,
    AgentInputError,
    AgentModelError,
    AgentRunError,
    OutputValidationError,
    RunLimitExceeded,
    RunResult,
    ThreadNotAwaitingApprovalError,
    UnknownThreadError,
)
from harmonygraph.engine.runtime import LoopRuntime
from harmonygraph.engine.state import initial_state
from harmonygraph.harmony.messages import Message
from harmonygraph.harmony.prompt import (
    DEFAULT_IDENTITY,
    DeveloperConfig,
    ReasoningLevel,
    ResponseFormat,
    SystemConfig,
    parse_reasoning,
)
from harmonygraph.models.base import Model, ModelSettings, Usage
from harmonygraph.tools.base import Tool, ToolContext, Toolset
from harmonygraph.tools.registry import ToolRegistry
from harmonygraph.tracing import otel
from harmonygraph.tracing.redaction import Redactor, model_secrets
from harmonygraph.tracing.replay import ReplayModel, ReplayToolRegistry, check_replay_end
from harmonygraph.tracing.trace import Trace, TraceRecorder, developer_dict, system_dict
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command, Durability, StreamMode

if TYPE_CHECKING:
    from harmonygraph.tools.browser.history import BrowserHistory

__all__ = ["Agent", "ChatSession", "RunOptions"]

T = TypeVar("T")


Checkpointer = BaseCheckpointSaver | Literal["memory"] | None


class RunOptions(TypedDict, total=False):
    """The keyword arguments of a run (`arun` documents each), typed for `run`/`stream`."""

    thread_id: str | None
    reasoning: ReasoningLevel | str | None
    message_history: Sequence[Message]
    deps: Any
    resume: Any
    trace_path: str | Path | None
    durability: Durability


class Agent(Generic[T]):
    """A gpt-oss agent: a model, tools, instructions, an optional output type.

    ```python
    agent = Agent(model="openai/gpt-oss-20b", tools=[add], instructions="Be exact.",
                  reasoning="low", output_type=Answer)
    result = agent.run("What is 2 + 3?")
    ```
    """

    def __init__(
        self,
        model: Model | str | None = None,
        tools: Sequence[Tool | Toolset | Callable[..., Any]] | ToolRegistry = (),
        *,
        instructions: str | None = None,
        reasoning: ReasoningLevel | str = "medium",
        output_type: Any = None,
        name: str = "agent",
        identity: str = DEFAULT_IDENTITY,
        knowledge_cutoff: str = "2024-06",
        current_date: str | None = None,
        limits: RunLimits | None = None,
        settings: ModelSettings | None = None,
        checkpointer: Checkpointer = "memory",
        trace_dir: str | Path | None = None,
        redact: Sequence[str] = (),
        prices: dict[str, Price] | None = None,
        tool_timeout: float = 60.0,
        max_result_chars: int = 20_000,
        artifacts_dir: str | Path | None = None,
        deps: Any = None,
        enforce_output: bool = False,
        response_format: ResponseFormat | None = None,
    ) -> None:
        """`response_format` overrides the format described to the model (by default the
        output type's), as a replay of a recorded format needs."""
        # What a copy of this agent with another model and tools is built from (replay).
        self._options: dict[str, Any] = {
            "instructions": instructions, "reasoning": reasoning, "output_type": output_type,
            "name": name, "identity": identity, "knowledge_cutoff": knowledge_cutoff,
            "current_date": current_date, "limits": limits, "trace_dir": trace_dir,
            "prices": prices, "artifacts_dir": artifacts_dir, "deps": deps,
            "response_format": response_format,
        }  # fmt: skip
        if model is None or isinstance(model, str):
            from harmonygraph.models import make_model

            model = make_model(model=model)
        self.model: Model = model
        self.name = name
        self.instructions = instructions
        self.reasoning: ReasoningLevel = parse_reasoning(reasoning)
        self.output_type = output_type
        self.identity = identity
        self.knowledge_cutoff = knowledge_cutoff
        self.current_date = current_date
        self.limits = limits or RunLimits()
        self.settings = settings or ModelSettings()
        self.trace_dir = Path(trace_dir) if trace_dir else None
        # The client's own secrets (key, URL credentials, header values) are always
        # redacted, whatever their shape, with any the caller names.
        self.redactor = Redactor([*redact, *model_secrets(self.model)])
        self.prices = prices
        self.artifacts_dir = Path(artifacts_dir) if artifacts_dir else None
        self.deps = deps
        self.registry = (
            tools
            if isinstance(tools, ToolRegistry)
            else ToolRegistry.from_items(
                list(tools), default_timeout=tool_timeout, max_result_chars=max_result_chars
            )
        )
        self.registry.prepare()
        self._output = OutputSpec(output_type) if output_type is not None else None
        if enforce_output and output_type is not None:
            # The answer's body is generated under the schema's grammar where the backend
            # can (the reasoning stays free); validation below still runs either way.
            if getattr(model, "supports_constrained_output", False):
                self.settings = dataclasses.replace(self.settings, enforce_output=True)
            else:
                warnings.warn(
                    f"{model.name}: this backend cannot constrain the final answer to the "
                    "schema; falling back to validate-and-retry",
                    RuntimeWarning,
                    stacklevel=2,
                )
        self._response_format = response_format or (
            ResponseFormat.from_type(output_type) if output_type is not None else None
        )
        # "memory": an in-memory saver, used by the runs that need one (a thread id, a
        # chat, an approval); a one-shot run skips checkpointing, which would otherwise
        # serialise the whole conversation at every step.
        self._checkpoint_on_demand = checkpointer == "memory"
        self.checkpointer: BaseCheckpointSaver | None = (
            memory_saver() if checkpointer == "memory" else checkpointer
        )
        self._graph = _compile(self.checkpointer)
        self._graph_plain = (
            build_agent_graph().compile() if self._checkpoint_on_demand else self._graph
        )

    async def aclose(self) -> None:
        """Release what the agent keeps between runs: warm sandbox kernels, the model's
        connections. Runs in progress are not affected; runs started later re-acquire."""
        await self.registry.aclose()
        await self.model.aclose()

    def close(self) -> None:
        """`aclose` for sync code."""
        run_sync(self.aclose())

    async def __aenter__(self) -> Agent[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Agent[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration per run ---------------------------------------------------------
    def system_config(
        self, reasoning: ReasoningLevel | None = None, registry: ToolRegistry | None = None
    ) -> SystemConfig:
        reg = registry or self.registry
        return SystemConfig(
            identity=self.identity,
            knowledge_cutoff=self.knowledge_cutoff,
            current_date=self.current_date or dt.date.today().isoformat(),
            reasoning=reasoning or self.reasoning,
            builtin_tools=reg.builtin_namespaces(),
        )

    def developer_config(self, registry: ToolRegistry | None = None) -> DeveloperConfig:
        reg = registry or self.registry
        return DeveloperConfig(
            instructions=self.instructions,
            tools=reg.function_namespaces(),
            response_format=self._response_format,
        )

    # -- running -------------------------------------------------------------------------
    async def arun(
        self,
        input: str | Sequence[Message] | None = None,
        *,
        thread_id: str | None = None,
        reasoning: ReasoningLevel | str | None = None,
        message_history: Sequence[Message] = (),
        deps: Any = None,
        resume: Any = None,
        trace_path: str | Path | None = None,
        durability: Durability = "sync",
    ) -> RunResult[T]:
        """Run until a final answer validates, a limit is reached, or a tool needs approval.

        `resume` answers a pending approval (`True`, `False` or `{"approved": ..., "reason": ...}`)
        on the same `thread_id`.

        `durability` (runs with a checkpoint: a `thread_id`, approvals, a recorder) is
        LangGraph's: `"sync"` (the default) saves each step before the next starts, so a
        crash loses at most the step in progress and a run can be resumed where it
        stopped; `"exit"` saves once, when the run ends or stops for an approval: one
        write a run instead of one a step, and a crash loses the run in progress (its
        tools may then run again when it is retried). `harmonygraph serve` uses `"exit"`.
        """
        result: RunResult[T] | None = None
        async for event in self._run_events(
            input,
            thread_id=thread_id,
            reasoning=reasoning,
            message_history=message_history,
            deps=deps,
            resume=resume,
            trace_path=trace_path,
            durability=durability,
            stream=False,
        ):
            if isinstance(event, RunDone):
                result = event.result
        assert result is not None
        return result

    def run(
        self, input: str | Sequence[Message] | None = None, **options: Unpack[RunOptions]
    ) -> RunResult[T]:
        """`arun` for sync code."""
        return run_sync(self.arun(input, **options))

    async def astream(
        self, input: str | Sequence[Message] | None = None, **options: Unpack[RunOptions]
    ) -> AsyncIterator[AgentEvent]:
        """Typed events as the run goes: reasoning and answer deltas, tool calls, steps, the result.

        The last event is `RunDone(result)`; a run that fails raises after it.
        """
        async for event in self._run_events(input, stream=True, **options):
            yield event

    def stream(
        self, input: str | Sequence[Message] | None = None, **options: Unpack[RunOptions]
    ) -> Iterator[AgentEvent]:
        """`astream` for sync code."""
        return iterate_sync(self.astream(input, **options))

    def chat(
        self, *, reasoning: ReasoningLevel | str | None = None, trace_path: str | Path | None = None
    ) -> ChatSession:
        """A multi-turn conversation on its own thread."""
        return ChatSession(self, reasoning=reasoning, trace_path=trace_path)

    def replay(
        self,
        trace: Trace | str | Path,
        *,
        strict: bool = True,
        input: str | Sequence[Message] | None = None,
    ) -> RunResult[T]:
        """Re-run a recorded run with this agent's configuration, model and tools replayed."""
        return run_sync(self.areplay(trace, strict=strict, input=input))

    async def areplay(
        self,
        trace: Trace | str | Path,
        *,
        strict: bool = True,
        input: str | Sequence[Message] | None = None,
    ) -> RunResult[T]:
        """`replay` for async code. Without `input`, the recorded input is used."""
        tr = trace if isinstance(trace, Trace) else Trace.load(trace)
        clone = self._with(
            model=ReplayModel(tr, strict=strict),
            registry=ReplayToolRegistry(tr, self.registry, strict=strict),
        )
        if input is None:
            first = tr.model_calls[0] if tr.model_calls else None
            input = [Message.from_dict(d) for d in (first or {}).get("new_messages", [])]
        # The recorded date, so that a replay on another day renders the same prompt,
        # unless this agent names its own date. Everything else is this agent's own
        # (reasoning effort included): a strict replay checks what this agent would send.
        clone.current_date = self.current_date or tr.header.get("current_date")
        try:
            result = await clone.arun(input)
        except AgentRunError as exc:
            if strict:
                check_replay_end(
                    tr, cast(ReplayModel, clone.model), exc.result.status, exc.result.steps
                )
            raise
        if strict:
            check_replay_end(tr, cast(ReplayModel, clone.model), result.status, result.steps)
        return result

    def _with(self, *, model: Model, registry: ToolRegistry) -> Agent[T]:
        """This agent's configuration with another model and tools, on a fresh memory saver."""
        return Agent(
            model, registry, **self._options, settings=self.settings,
            redact=self.redactor.secrets, checkpointer="memory",
        )  # fmt: skip

    async def _run_events(
        self,
        input: str | Sequence[Message] | None,
        *,
        thread_id: str | None = None,
        reasoning: ReasoningLevel | str | None = None,
        message_history: Sequence[Message] = (),
        deps: Any = None,
        resume: Any = None,
        trace_path: str | Path | None = None,
        durability: Durability = "sync",
        stream: bool,
        recorder: TraceRecorder | None = None,
    ) -> AsyncIterator[AgentEvent]:
        if durability not in ("sync", "async", "exit"):
            raise ValueError(
                f"durability must be 'sync' (save each step), 'async' or 'exit' (save when "
                f"the run ends), not {durability!r}"
            )
        run_id = uuid.uuid4().hex[:12]
        thread = thread_id or run_id
        if resume is not None or (input is None and not message_history):
            await self._check_thread(thread_id, resume)  # before anything is recorded
        recorder_given = recorder is not None
        level = parse_reasoning(reasoning) if reasoning else self.reasoning
        system = self.system_config(level)
        developer = self.developer_config()
        path = (
            Path(trace_path)
            if trace_path
            else (self.trace_dir / f"{run_id}.jsonl" if self.trace_dir else None)
        )
        if recorder is None:
            recorder = TraceRecorder(path=path, redactor=self.redactor)
        recorder.start(
            run_id=run_id,
            model=self.model.name,
            system=system,
            developer=developer,
            tools=self.registry.recipients(),
            extra={
                "agent": self.name,
                "system": system_dict(system),
                "developer": developer_dict(developer),
            },
        )
        ctx = ToolContext(
            run_id=run_id,
            artifacts_dir=self.artifacts_dir or Path(".harmonygraph") / "artifacts" / run_id,
            deps=deps if deps is not None else self.deps,
        )
        # OpenTelemetry spans (None, and nothing of opentelemetry imported, when not configured).
        spans = otel.run_spans(
            agent=self.name, model=self.model.name, run_id=run_id, thread_id=thread,
            redactor=self.redactor, instructions=self.instructions,
        )  # fmt: skip
        runtime = LoopRuntime(
            model=self.model,
            registry=self.registry,
            system=system,
            developer=developer,
            settings=self.settings,
            limits=self.limits,
            recorder=recorder,
            ctx=ctx,
            output=self._output,
            stream_model=stream,
            spans=spans,
        )
        config: Any = {
            "configurable": {"thread_id": thread},
            # Our limits end a run first: a model step, a validation, and one tools step
            # per call (an answer may hold several) each take a superstep.
            "recursion_limit": max(
                100, self.limits.max_steps * 3 + self.limits.max_tool_calls + 20
            ),
        }
        if resume is not None:
            graph_input: Any = Command(resume=resume)
        elif input is None and not message_history and await self._interrupted(config):
            # The thread stopped between steps (a crash, a cancelled task): go on from
            # the checkpoint, so a pending tool call runs instead of being skipped.
            graph_input = None
        else:
            new: list[Message] = list(message_history)
            if isinstance(input, str):
                new.append(Message.user(input))
            elif input is not None:
                new.extend(input)
            graph_input = initial_state(new)
        needs_checkpoint = (
            thread_id is not None
            or resume is not None
            or recorder_given
            or any(self.registry.needs_approval(r) for r in self.registry.recipients())
        )
        graph = self._graph if needs_checkpoint else self._graph_plain
        before = await self._message_count(config) if needs_checkpoint else len(message_history)
        state: dict[str, Any] = {}
        pending: Any = None
        not_saved: CheckpointWriteError | None = None
        await self.registry.start(ctx)
        try:
            # Only what this run reads: events when streaming, interrupts when it can
            # be interrupted (a checkpointer); every stream mode costs each step.
            modes: list[StreamMode] = ["values"]
            if stream:
                modes.append("custom")
            if needs_checkpoint:
                modes.append("updates")
            # "sync": each step's checkpoint is written before the next step starts, so
            # a crash loses at most the step in progress, and a write that fails stops
            # the run at that step (CheckedSaver) instead of at its end, or never.
            async for mode, chunk in graph.astream(
                graph_input,
                config,
                stream_mode=modes,
                durability=durability if needs_checkpoint and graph.checkpointer else None,
                context=runtime,
            ):
                if mode == "custom":
                    if stream:
                        yield cast(AgentEvent, chunk)
                elif mode == "values":
                    state = cast(dict[str, Any], chunk)
                elif isinstance(chunk, dict) and "__interrupt__" in chunk:
                    pending = chunk["__interrupt__"][0].value
        except CheckpointWriteError as exc:
            not_saved = exc
        except BaseException as exc:
            if spans is not None:
                spans.fail(exc)
            raise
        finally:
            # What the browser showed, kept for citations (its `close` drops it).
            sources = _browser_pages(ctx)
            await self.registry.close(ctx)
            if isinstance(graph.checkpointer, CheckedSaver):
                graph.checkpointer.forget_failures(thread)
        if not_saved is not None:
            state = {**state, "status": "checkpoint_error", "error": str(not_saved)}
            pending = None
        if stream and isinstance(pending, dict) and "recipient" in pending:
            # The call that waits for approval: streamed like any call (it runs on resume).
            yield ToolCallEvent(
                state.get("steps", 0), str(pending["recipient"]), str(pending.get("arguments", ""))
            )
        result = self._result(state, pending, run_id, thread, before, recorder, path)
        result.sources = sources
        recorder.end(
            status=result.status,
            output=result.output,
            usage=result.usage,
            error=result.error,
            cost_usd=result.cost_usd,
        )
        result.trace = Trace(list(recorder.records), path)
        if spans is not None:
            spans.end(result.status, result.usage, result.steps, result.error)
        if stream:
            yield RunDone(result)
        if not_saved is not None:
            raise AgentCheckpointError(result.error or str(not_saved), result) from not_saved
        _raise_for_status(result)
        if not stream:
            yield RunDone(result)

    async def _check_thread(self, thread_id: str | None, resume: Any) -> None:
        """A run that continues a thread (`resume=`, or no input) needs one that exists."""
        what = "resume= answers an approval" if resume is not None else "a run without input"
        if thread_id is None:
            raise UnknownThreadError(
                f"{what} continues a thread: pass the thread_id of the run to continue "
                "(result.thread_id), or give input to start a new run",
                None,
            )
        snapshot = (
            await self._graph.aget_state({"configurable": {"thread_id": thread_id}})
            if self.checkpointer is not None
            else None
        )
        if snapshot is None or not snapshot.values:
            where = (
                "this agent has no checkpointer (checkpointer=None)"
                if self.checkpointer is None
                else f"this agent's checkpointer ({type(self.checkpointer).__name__}) has "
                "nothing saved for it"
            )
            raise UnknownThreadError(
                f"unknown thread {thread_id!r}: {where}. {what} continues a thread an earlier "
                "run saved; use that run's result.thread_id with the same checkpointer "
                "(a database saver to continue in another process), or give input to start "
                "a new run",
                thread_id,
            )
        if resume is not None and not snapshot.interrupts:
            status = snapshot.values.get("status", "unknown")
            raise ThreadNotAwaitingApprovalError(
                f"thread {thread_id!r} is not awaiting an approval (its last run ended "
                f"{status}); resume= only answers a pending approval: run the thread with "
                "new input instead",
                thread_id,
            )

    async def _interrupted(self, config: Any) -> bool:
        """Whether the thread's last run stopped with steps still to take."""
        if self.checkpointer is None:
            return False
        snapshot = await self._graph.aget_state(config)
        return bool(snapshot and snapshot.next and not snapshot.interrupts)

    async def _message_count(self, config: Any) -> int:
        if self.checkpointer is None:
            return 0
        snapshot = await self._graph.aget_state(config)
        return len(snapshot.values.get("messages", [])) if snapshot and snapshot.values else 0

    def _result(
        self,
        state: dict[str, Any],
        pending: Any,
        run_id: str,
        thread: str,
        before: int,
        recorder: TraceRecorder,
        path: Path | None,
    ) -> RunResult[T]:
        messages = list(state.get("messages", []))
        usage = state.get("usage") or Usage()
        status = state.get("status", "running")
        if pending is not None:
            status = "awaiting_approval"
        output: Any = None
        if status == "completed":
            # The state keeps the answer as text (checkpointers need not know the output
            # type); it validated in the loop, so validating again cannot fail.
            text = state.get("output") or ""
            output = self._output.validate(text) if self._output else text
        return RunResult(
            output=output,
            status=status,
            messages=messages,
            new_messages=messages[before:],
            usage=usage,
            cost_usd=estimate_cost(self.model.name, usage, self.prices),
            steps=state.get("steps", 0),
            tool_calls=state.get("tool_calls", 0),
            step_usage=list(state.get("step_usage", [])),
            artifacts=list(state.get("artifacts", [])),
            trace=Trace(list(recorder.records), path),
            run_id=run_id,
            thread_id=thread,
            # Redacted like the trace: the error reaches run_end and the exception message.
            error=self.redactor.text(state["error"]) if state.get("error") else None,
            trace_path=path,
            output_errors=[self.redactor.text(e) for e in state.get("output_errors") or []],
            interrupt=pending,
        )


def _browser_pages(ctx: ToolContext) -> BrowserHistory | None:
    """The run's browser history (cursor n: the n-th page shown), if it used a browser."""
    pages = ctx.state.get("browser")
    if pages is None:
        return None
    from harmonygraph.tools.browser.history import BrowserHistory

    return pages if isinstance(pages, BrowserHistory) else None


def _raise_for_status(result: RunResult[Any]) -> None:
    status = result.status
    if status in ("completed", "awaiting_approval"):
        return
    if status == "invalid_output":
        raise OutputValidationError(result.error or "the final answer did not validate", result)
    if status == "model_error":
        raise AgentModelError(result.error or "the model call failed", result)
    if status == "invalid_input":
        raise AgentInputError(result.error or "the input cannot be sent to the model", result)
    raise RunLimitExceeded(result.error or f"the run stopped: {status}", result)


def _compile(checkpointer: BaseCheckpointSaver | None) -> Any:
    """The loop's graph on `checkpointer`, wrapped so that a failed write is raised."""
    saver = CheckedSaver(checkpointer) if checkpointer is not None else None
    return build_agent_graph().compile(checkpointer=saver)


class ChatSession:
    """A multi-turn conversation with an agent: each `send` is a run on the same thread."""

    def __init__(
        self,
        agent: Agent[Any],
        *,
        reasoning: ReasoningLevel | str | None = None,
        trace_path: str | Path | None = None,
    ) -> None:
        self.agent = agent
        self.reasoning: ReasoningLevel = (
            parse_reasoning(reasoning) if reasoning else agent.reasoning
        )
        self.thread_id = uuid.uuid4().hex[:12]
        self.recorder = TraceRecorder(
            path=Path(trace_path) if trace_path else None, redactor=agent.redactor
        )
        self.usage = Usage()
        self.turns = 0
        if agent.checkpointer is None:
            raise ValueError(
                "a chat session needs a checkpointer to keep the conversation; use the default"
            )

    def set_reasoning(self, level: str) -> None:
        self.reasoning = parse_reasoning(level)

    async def asend_events(self, text: str) -> AsyncIterator[AgentEvent]:
        async for event in self.agent._run_events(
            text,
            thread_id=self.thread_id,
            reasoning=self.reasoning,
            stream=True,
            recorder=self.recorder,
        ):
            if isinstance(event, RunDone):
                self.usage = self.usage + event.result.usage
                self.turns += 1
            yield event

    async def asend(self, text: str) -> RunResult[Any]:
        result = None
        async for event in self.asend_events(text):
            if isinstance(event, RunDone):
                result = event.result
        assert result is not None
        return result

    def send(self, text: str) -> RunResult[Any]:
        return run_sync(self.asend(text))

    def save(self, path: str | Path) -> Path:
        """Write the conversation's trace so far to `path` (JSON Lines)."""
        import json

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.recorder.records),
            encoding="utf-8",
        )
        return p
