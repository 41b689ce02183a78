"""The tool contract: what a tool is, what it gets and what it gives back.

A `Tool` validates the raw argument text the model sent and then runs. Function tools
take JSON arguments; built-in tools such as `python` take the message body as text.
A `Toolset` groups tools under one harmony namespace (`functions` by default); the
built-in namespaces `browser` and `python` are rendered in the system message, as
gpt-oss was trained to see them.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_type_hints, overload

import jsonschema
import pydantic
from harmonygraph.bounds import JSONDepthError, loads_bounded
from harmonygraph.concurrency import run_in_thread
from harmonygraph.schema_errors import validation_problems
from openai_harmony import ToolDescription, ToolNamespaceConfig

__all__ = [
    "ArgumentError",
    "Artifact",
    "FunctionTool",
    "SchemaTool",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutput",
    "Toolset",
    "tool",
]

InputKind = Literal["json", "text"]


class ToolError(Exception):
    """Raised by a tool to report a failure to the model as the tool's result.

    The message is what the model reads, so it should say what went wrong and what
    the model can do about it.
    """


class ArgumentError(ToolError):
    """The arguments the model sent do not fit the tool's parameters."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """A file a tool produced (a chart, a CSV) that reports can embed or link."""

    path: Path
    mime_type: str
    source: str = ""
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "mime_type": self.mime_type,
            "source": self.source,
            "description": self.description,
        }


@dataclass(slots=True)
class ToolOutput:
    """What a tool call gives back: the text the model reads, plus data for the program."""

    text: str
    is_error: bool = False
    artifacts: list[Artifact] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def error(cls, message: str, **metadata: Any) -> ToolOutput:
        return cls(text=message, is_error=True, metadata=dict(metadata))


@dataclass(slots=True)
class ToolContext:
    """Per-run facts a tool may use; the agent loop builds one per run."""

    run_id: str = "run"
    artifacts_dir: Path = field(default_factory=lambda: Path(".harmonygraph") / "artifacts")
    deps: Any = None
    # Per-run scratch space keyed by toolset namespace (browser history, sandbox session).
    state: dict[str, Any] = field(default_factory=dict)




class Tool:
    """One callable tool. Subclasses implement `invoke`; `validate` turns raw text into args."""

    # Whether a timeout stops the call (async code) or only stops waiting for it (a sync
    # function in a thread, which nothing can interrupt).
    cancellable: bool = True
    name: str
    description: str
    parameters: dict[str, Any] | None
    input_kind: InputKind
    timeout: float | None
    needs_approval: bool

    def __init__(
        self,
        name: str,
        description: str = "",
        parameters: dict[str, Any] | None = None,
        *,
        input_kind: InputKind = "json",
        timeout: float | None = None,
        needs_approval: bool = False,
    ) -> None:
        if not name.isidentifier():
            raise ValueError(
                f"tool name {name!r} is not an identifier: harmony recipients are "
                "`namespace.name`, so use letters, digits and underscores only"
            )
        self.name = name
        self.description = description
        self.parameters = parameters
        self.input_kind = input_kind
        self.timeout = timeout
        self.needs_approval = needs_approval

    def validate(self, raw: str) -> Any:
        """Parse and check the model's argument text; raise `ArgumentError` if it does not fit."""
        if self.input_kind == "text":
            return raw
        return parse_json_arguments(raw)

    async def invoke(self, args: Any, ctx: ToolContext) -> ToolOutput:
        raise NotImplementedError

    def description_for_model(self) -> ToolDescription:
        return ToolDescription.new(self.name, self.description, self.parameters)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def parse_json_arguments(raw: str) -> Any:
    """JSON arguments as gpt-oss sends them; an empty body means no arguments."""
    text = raw.strip()
    if not text:
        return {}
    try:
        # Depth is bounded before parsing: the parser and the validators recurse per level.
        return loads_bounded(text)
    except JSONDepthError as exc:
        raise ArgumentError(f"arguments are refused: {exc}") from None
    except json.JSONDecodeError as exc:
        excerpt = text[max(0, exc.pos - 20) : exc.pos + 20]
        raise ArgumentError(
            f"arguments are not valid JSON ({exc.msg} at character {exc.pos}, near {excerpt!r}); "
            "send one JSON object"
        ) from None


F = TypeVar("F", bound=Callable[..., Any])


class FunctionTool(Tool):
    """A typed Python function (sync or async) exposed as a function tool.

    The parameter schema comes from the type hints through pydantic; a parameter
    annotated `ToolContext` receives the run's context and is hidden from the model.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        needs_approval: bool = False,
    ) -> None:
        self.fn = fn
        self._is_async = inspect.iscoroutinefunction(fn)
        self.cancellable = self._is_async
        signature = inspect.signature(fn)
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        self._ctx_param: str | None = None
        for pname, param in signature.parameters.items():
            annotation = hints.get(pname, Any)
            if annotation is ToolContext:
                self._ctx_param = pname
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"tool {fn.__name__}: *args and **kwargs cannot be described")
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (annotation, default)
        self.args_model: type[pydantic.BaseModel] = pydantic.create_model(
            f"{fn.__name__}_args",
            __config__=pydantic.ConfigDict(extra="forbid"),
            **fields,
        )
        doc = inspect.getdoc(fn) or ""
        super().__init__(
            name or fn.__name__,
            description if description is not None else doc,
            _schema_without_titles(self.args_model.model_json_schema()),
            timeout=timeout,
            needs_approval=needs_approval,
        )
        functools.update_wrapper(self, fn)

    def validate(self, raw: str) -> pydantic.BaseModel:
        data = parse_json_arguments(raw)
        if not isinstance(data, dict):
            raise ArgumentError(f"arguments must be a JSON object, got {type(data).__name__}")
        try:
            return self.args_model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise ArgumentError("; ".join(validation_problems(exc))) from None

    async def invoke(self, args: Any, ctx: ToolContext) -> ToolOutput:
        kwargs = {k: getattr(args, k) for k in type(args).model_fields} if args is not None else {}
        if self._ctx_param:
            kwargs[self._ctx_param] = ctx
        if self._is_async:
            result = await self.fn(**kwargs)
        else:
            # Sync tools run in a worker thread so a slow one cannot stall the event loop
            # and so its timeout can still be reported.
            result = await run_in_thread(self.fn, **kwargs)
        return to_tool_output(result)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


class SchemaTool(Tool):
    """A tool declared from a raw JSON Schema, with a handler taking the arguments as a dict."""

    def __init__(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any],
        handler: Callable[[dict[str, Any]], Any] | Callable[[dict[str, Any]], Awaitable[Any]],
        *,
        timeout: float | None = None,
        needs_approval: bool = False,
    ) -> None:
        from harmonygraph.tools.schema import reconcile_schema

        # One schema for the prompt and the validator, in which every default and enum
        # value the prompt shows validates (`reconcile_schema`).
        parameters = reconcile_schema(parameters)
        super().__init__(
            name, description, parameters, timeout=timeout, needs_approval=needs_approval
        )
        validator_cls = jsonschema.validators.validator_for(
            parameters, jsonschema.Draft202012Validator
        )
        try:
            validator_cls.check_schema(parameters)
        except jsonschema.SchemaError as exc:
            raise ValueError(
                f"tool {name}: parameters are not a valid JSON Schema: {exc.message}"
            ) from None
        self._validator = validator_cls(parameters)
        self.handler = handler
        self.cancellable = inspect.iscoroutinefunction(handler)
        self.original_name = name

    def validate(self, raw: str) -> dict[str, Any]:
        data = parse_json_arguments(raw)
        errors = sorted(self._validator.iter_errors(data), key=lambda e: list(e.path))
        if errors:
            msgs = []
            for err in errors[:5]:
                where = ".".join(str(p) for p in err.path)
                msgs.append(f"`{where}`: {err.message}" if where else err.message)
            raise ArgumentError("; ".join(msgs))
        return data

    async def invoke(self, args: Any, ctx: ToolContext) -> ToolOutput:
        if inspect.iscoroutinefunction(self.handler):
            result = await self.handler(args)
        else:
            result = await run_in_thread(self.handler, args)
        return to_tool_output(result)


def to_tool_output(result: Any) -> ToolOutput:
    """Whatever a tool function returned, as the text the model reads."""
    if isinstance(result, ToolOutput):
        return result
    if isinstance(result, str):
        return ToolOutput(text=result)
    if isinstance(result, pydantic.BaseModel):
        return ToolOutput(text=result.model_dump_json(), metadata={"value": result.model_dump()})
    try:
        return ToolOutput(text=json.dumps(result, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        return ToolOutput(text=str(result))


def _schema_without_titles(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic puts a `title` on every property; the model does not need them."""

    def strip(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, dict):
            return {
                k: strip(v, k == "properties")
                for k, v in node.items()
                if not (k == "title" and not in_properties and isinstance(v, str))
            }
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(schema)


@overload
def tool(fn: F, /) -> FunctionTool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    needs_approval: bool = False,
) -> Callable[[F], FunctionTool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    needs_approval: bool = False,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Turn a typed function into a function tool: `@tool` or `@tool(timeout=5)`."""

    def wrap(f: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(
            f, name=name, description=description, timeout=timeout, needs_approval=needs_approval
        )

    return wrap(fn) if fn is not None else wrap


class Toolset:
    """Tools under one harmony namespace.

    `builtin` toolsets (browser, python) are described in the system message; the rest go
    to the developer message. `start`/`close` bracket a run so that a toolset can hold
    per-run resources (a sandbox session, the browser's page history).
    """

    builtin: bool = False

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        *,
        namespace: str = "functions",
        description: str | None = None,
    ) -> None:
        if not namespace.isidentifier():
            raise ValueError(f"namespace {namespace!r} is not an identifier")
        self.namespace = namespace
        self.description = description
        self.tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, t: Tool | Callable[..., Any]) -> Tool:
        if not isinstance(t, Tool):
            t = FunctionTool(t)
        if t.name in self.tools:
            raise ValueError(f"namespace {self.namespace} already has a tool named {t.name}")
        self.tools[t.name] = t
        return t

    def resolve(self, recipient: str) -> Tool | None:
        """The tool a recipient such as `functions.get_weather` names, or None."""
        ns, dot, name = recipient.partition(".")
        if ns != self.namespace or not dot:
            return None
        return self.tools.get(name)

    def recipients(self) -> list[str]:
        return [f"{self.namespace}.{name}" for name in self.tools]

    def namespace_config(self) -> ToolNamespaceConfig:
        return ToolNamespaceConfig(
            name=self.namespace,
            description=self.description,
            tools=[t.description_for_model() for t in self.tools.values()],
        )

    async def start(self, ctx: ToolContext) -> None:
        """Acquire per-run resources; called once before the run's first tool call."""

    async def close(self, ctx: ToolContext) -> None:
        """Release per-run resources; called once when the run ends, even on error."""

    def prepare(self) -> None:
        """Start, in the background, what a first run would otherwise wait for (a warm
        sandbox pool); called when an `Agent` is built. Must return at once."""

    async def aclose(self) -> None:
        """Release what `prepare` and the runs kept between runs (the agent is done)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r}, tools={list(self.tools)})"


def tools_from_schemas(
    functions: Iterable[Mapping[str, Any]],
    handler: Callable[[str, dict[str, Any]], Any],
) -> list[SchemaTool]:
    """Declare tools from OpenAI-style function definitions (`name`, `description`, `parameters`).

    Accepts the `{"type": "function", "function": {...}}` wrapping too. Dotted names
    become identifiers (`math.factorial` → `math_factorial`; the handler still gets the
    original name) and Python-style types (`dict`, `float`, `tuple`) become JSON Schema's.
    """
    from harmonygraph.tools.schema import identifier, normalize_schema

    out = []
    for fn in functions:
        if "function" in fn and isinstance(fn["function"], Mapping):
            fn = fn["function"]
        original = str(fn["name"])
        params = normalize_schema(fn.get("parameters") or {"type": "object", "properties": {}})
        tool = SchemaTool(
            identifier(original),
            fn.get("description", ""),
            params,
            functools.partial(handler, original),
        )
        tool.original_name = original
        out.append(tool)
    return out
