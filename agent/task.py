"""Task files: an agent run described in YAML, for `harmonygraph run TASK.yaml`.

```yaml
instructions: You are a careful analyst.
input: How many words are in "the quick brown fox"?
reasoning: low                 # low | medium | high
model: {base_url: http://localhost:8000/v1, name: openai/gpt-oss-20b, api: completions}
tools:
  - python                     # built-in: python (sandbox) or browser
  - import: mypackage.tools:word_count   # a function, Tool or Toolset; mypackage/ may sit
                                         # beside this file (its folder is searched first)
  - mcp: {command: [mcp-server-git, --repository, .]}   # an MCP server's tools (or url: ...)
output_schema:                 # or output_type: mypackage.models:Answer
  type: object
  properties: {count: {type: integer}}
  required: [count]
limits: {max_steps: 10, max_tool_calls: 8, max_wall_s: 120}
```
A misspelt key or built-in is refused with its place and the nearest valid name. Reading
a task file is safe whatever it holds (size cap, no YAML aliases, bounded nesting; see
`load_task`); running one imports the Python it names, like running a script.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from harmonygraph.safe_yaml import YamlLimitError, load_yaml
from harmonygraph.schema_errors import validation_problems
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = [
    "BUILTIN_TOOLS",
    "MAX_TASK_BYTES",
    "LimitsSpec",
    "MCPSpec",
    "ModelSpec",
    "TaskError",
    "TaskSpec",
    "ToolSpec",
    "load_task",
]

BUILTIN_TOOLS = ("python", "browser")
MAX_TASK_BYTES = 1024 * 1024  # a task file is a description, not a data set


class TaskError(ValueError):
    """A task file that cannot be used; the message names the file and the place."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    base_url: str | None = None
    name: str | None = None
    api: Literal["completions", "chat", "ollama-raw", "responses"] | None = None
    api_key_env: str | None = Field(
        None, description="name of the environment variable holding the key"
    )
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    timeout: float | None = None


class LimitsSpec(_Strict):
    max_steps: int | None = None
    max_tool_calls: int | None = None
    max_tokens: int | None = None
    max_wall_s: float | None = None
    max_repeated_calls: int | None = None
    output_retries: int | None = None


class MCPSpec(_Strict):
    """An MCP server's tools: the arguments of `harmonygraph.tools.mcp.MCPToolset`."""

    command: list[str] | str | None = None
    url: str | None = None
    transport: Literal["stdio", "http", "sse"] | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None  # relative to the task file's folder
    headers: dict[str, str] | None = None
    namespace: str | None = None
    tools: list[str] | None = None
    exclude: list[str] | None = None
    needs_approval: bool | list[str] | None = None
    timeout: float | None = None
    connect_timeout: float | None = None


class ToolSpec(_Strict):
    import_: str | None = Field(None, alias="import")
    builtin: Literal["python", "browser"] | None = None
    mcp: MCPSpec | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class TaskSpec(_Strict):
    name: str = "task"
    instructions: str | None = None
    input: str
    reasoning: Literal["low", "medium", "high"] = "medium"
    model: ModelSpec = Field(default_factory=lambda: ModelSpec.model_validate({}))
    tools: list[ToolSpec | str] = Field(default_factory=list)
    output_schema: dict[str, Any] | None = None
    output_type: str | None = None
    limits: LimitsSpec = Field(default_factory=lambda: LimitsSpec.model_validate({}))
    _base_dir: Path | None = PrivateAttr(None)  # the task file's folder: imports look there

    def tool_specs(self) -> list[ToolSpec]:
        out = []
        for t in self.tools:
            if isinstance(t, str):
                key = "builtin" if t in BUILTIN_TOOLS else "import"
                out.append(ToolSpec.model_validate({key: t}))
            else:
                out.append(t)
        return out


def _did_you_mean(loc: Sequence[Any]) -> str:
    near = difflib.get_close_matches(str(loc[-1]), _fields_at(tuple(loc)), n=1)
    return f" (did you mean `{near[0]}`?)" if near else ""


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: Any = TaskSpec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        ann = field.annotation
        candidates = [
            a
            for a in getattr(ann, "__args__", (ann,))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not candidates:
            return []
        model = candidates[0]
    return [f.alias or name for name, f in model.model_fields.items()]


def _read_task_text(p: Path) -> str:
    try:
        if p.exists() and not p.is_file():
            raise TaskError(f"{p}: not a regular file; give the path of a YAML task file")
        with p.open("rb") as f:
            data = f.read(MAX_TASK_BYTES + 1)
    except OSError as exc:
        raise TaskError(f"cannot read task file {p}: {exc.strerror}") from None
    if len(data) > MAX_TASK_BYTES:
        raise TaskError(
            f"{p}: over the {MAX_TASK_BYTES // 1024} KiB limit for task files; keep large "
            "inputs in files the tools read, not in the task file"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TaskError(
            f"{p}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "save the task file as UTF-8"
        ) from None


def load_task(path: str | Path) -> TaskSpec:
    """Read and check a task file; every problem is a `TaskError` naming the file and place.

    Reading is safe for any content: the file is capped at `MAX_TASK_BYTES`, YAML aliases
    are refused and values and nesting are bounded (`harmonygraph.safe_yaml`), and the
    output schema is checked. Nothing is imported until `agent_for_task`.
    """
    p = Path(path)
    text = _read_task_text(p)
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "refused" if isinstance(exc, YamlLimitError) else "not valid YAML"
        raise TaskError(f"{p}: {what}{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise TaskError(f"{p}: a task file is a mapping of keys (instructions, input, tools, ...)")
    try:
        spec = TaskSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = validation_problems(
            exc, noun="key", root="(task)", show_input=False, hint=_did_you_mean
        )
        raise TaskError(f"{p}: " + "; ".join(problems)) from None
    problems = [*_tool_problems(spec), *_schema_problems(spec)]
    if spec.output_type is not None and (why := _ref_problem(spec.output_type)):
        problems.append(f"`output_type`: {why}")
    if problems:
        raise TaskError(f"{p}: " + "; ".join(problems))
    spec._base_dir = p.resolve().parent
    return spec


_REF = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def _ref_problem(ref: str) -> str | None:
    """Why `ref` is not a `package.module:name` reference, or None."""
    if _REF.fullmatch(ref):
        return None
    if "/" in ref or "\\" in ref or ref.startswith("."):
        return (
            f"import `{ref}` is a file path; name a module instead, as package.module:name "
            "(the task file's folder is searched first: a file x.py beside it is `x:name`)"
        )
    if ":" not in ref and "." in ref:
        module, _, attr = ref.rpartition(".")
        return (
            f"import `{ref}` must look like package.module:name (did you mean `{module}:{attr}`?)"
        )
    return f"import `{ref}` must look like package.module:name"


def _tool_problems(spec: TaskSpec) -> list[str]:
    problems = []
    for i, t in enumerate(spec.tools):
        if isinstance(t, ToolSpec):
            given = [t.import_ is not None, t.builtin is not None, t.mcp is not None]
            if not any(given):
                problems.append(
                    f"`tools.{i}`: give `import: package.module:name`, `builtin: python|browser` "
                    "or `mcp: {command: [...]}`"
                )
            elif t.import_ is not None and t.builtin is not None:
                problems.append(f"`tools.{i}`: give `import` or `builtin`, not both")
            elif sum(given) > 1:
                problems.append(f"`tools.{i}`: give `mcp` alone, not with `import` or `builtin`")
            elif t.mcp is not None and (t.mcp.command is None) == (t.mcp.url is None):
                problems.append(f"`tools.{i}.mcp`: give `command: [...]` or `url: ...`, not both")
            elif t.import_ is not None and (why := _ref_problem(t.import_)):
                problems.append(f"`tools.{i}`: {why}")
            continue
        if t in BUILTIN_TOOLS:
            continue
        if ":" not in t and "." not in t and "/" not in t:
            near = difflib.get_close_matches(t, BUILTIN_TOOLS, n=1, cutoff=0.5)
            hint = f" (did you mean `{near[0]}`?)" if near else ""
            problems.append(
                f"`tools.{i}`: unknown built-in tool `{t}`{hint}; the built-ins are "
                f"{' and '.join(BUILTIN_TOOLS)}; other tools are imported as package.module:name"
            )
        elif why := _ref_problem(t):
            problems.append(f"`tools.{i}`: {why}")
    return problems


def _schema_problems(spec: TaskSpec) -> list[str]:
    schema = spec.output_schema
    if schema is None:
        return []
    import jsonschema
    from harmonygraph.harmony.schema import SchemaError, flatten_schema

    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in exc.path)
        return [f"`output_schema{where}` is not valid JSON Schema: {_short(exc.message)}"]
    try:
        flatten_schema(schema)
    except SchemaError as exc:
        return [f"`output_schema`: {_short(str(exc))}"]
    return []


def _short(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def import_object(ref: str, base_dir: str | Path | None = None) -> Any:
    """`package.module:attribute` → the object, with a clear `TaskError` otherwise.

    `base_dir` (a task file's folder) goes first on the import path, as a script's folder
    does for `python script.py`, so a package beside the task file is found.
    """
    if why := _ref_problem(ref):
        raise TaskError(why)
    module_name, _, attr = ref.partition(":")
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    where = (
        f" (looked beside the task file in {base_dir} and on the Python path)" if base_dir else ""
    )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskError(f"cannot import module `{module_name}` for `{ref}`: {exc}{where}") from None
    except Exception as exc:  # the module's own code failed: a SyntaxError, a raise at import
        raise TaskError(
            f"importing module `{module_name}` for `{ref}` failed: "
            f"{type(exc).__name__}: {_short(str(exc))}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TaskError(f"module `{module_name}` has no `{attr}` (from `{ref}`)") from None
    return obj


def agent_for_task(
    spec: TaskSpec,
    *,
    base_url: str | None = None,
    model: str | None = None,
    api: str | None = None,
    trace_dir: Path | None = None,
    artifacts_dir: Path | None = None,
) -> Any:
    """The `Agent` a task file describes; command-line options override the file's model."""
    import os

    from harmonygraph.engine import Agent, RunLimits
    from harmonygraph.models import make_model
    from harmonygraph.models.base import ModelSettings

    tools: list[Any] = []
    for i, ts in enumerate(spec.tool_specs()):
        if ts.import_:
            obj = import_object(ts.import_, spec._base_dir)
        elif ts.builtin is None and ts.mcp is None:
            raise TaskError("each tool needs `import: module:name` or `builtin: python|browser`")
        try:
            if ts.mcp is not None:
                from harmonygraph.tools.mcp import MCPToolset

                mcp_args = ts.mcp.model_dump(exclude_none=True)
                if "cwd" in mcp_args and spec._base_dir is not None:
                    mcp_args["cwd"] = str(spec._base_dir / mcp_args["cwd"])
                tools.append(MCPToolset(**mcp_args))
            elif ts.builtin == "python":
                from harmonygraph.tools.python import PythonToolset

                tools.append(PythonToolset(**ts.options))
            elif ts.builtin == "browser":
                from harmonygraph.tools.browser import BrowserToolset

                tools.append(BrowserToolset(**ts.options))
            elif isinstance(obj, list | tuple):
                tools.extend(obj)
            else:
                tools.append(obj() if isinstance(obj, type) else obj)
        except Exception as exc:  # the tool's own set-up: bad options, a failing __init__
            name = ts.builtin or ts.import_ or "mcp"
            raise TaskError(
                f"`tools.{i}` ({name}) could not be set up: {type(exc).__name__}: "
                f"{_short(str(exc))}"
            ) from None

    output_type: Any = spec.output_schema
    if spec.output_type:
        output_type = import_object(spec.output_type, spec._base_dir)
    m = spec.model
    overrides: dict[str, Any] = {
        "max_tokens": m.max_tokens,
        "temperature": m.temperature,
        "top_p": m.top_p,
        "timeout": m.timeout,
    }
    settings = ModelSettings(**{k: v for k, v in overrides.items() if v is not None})
    api_key = os.environ.get(m.api_key_env) if m.api_key_env else None
    client = make_model(
        base_url=base_url or m.base_url, model=model or m.name, api=api or m.api, api_key=api_key
    )
    limits = RunLimits(**spec.limits.model_dump(exclude_none=True))
    return Agent(
        client,
        tools,
        instructions=spec.instructions,
        reasoning=spec.reasoning,
        output_type=output_type,
        name=spec.name,
        limits=limits,
        settings=settings,
        trace_dir=trace_dir,
        artifacts_dir=artifacts_dir,
        redact=[api_key] if api_key else (),
    )
