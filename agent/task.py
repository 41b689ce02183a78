"""Task files: an agent run described in YAML, for `harmonygraph run TASK.yaml`.

```yaml
instructions: You are a careful analyst.
input: How many words are in "the quick brown fox"?
reasoning: low                 # low | medium | high
model: {base_url: http://localhost:8000/v1, name: openai/gpt-oss-20b, api: completions}
tools:
  - python                     # built-in: python (sandbox) or browser
  - import: mypackage.tools:word_count   # a function, Tool or Toolset
output_schema:                 # or output_type: mypackage.models:Answer
  type: object
  properties: {count: {type: integer}}
  required: [count]
limits: {max_steps: 10, max_tool_calls: 8, max_wall_s: 120}
```
A misspelt key is refused with the key's place and the nearest valid name.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LimitsSpec", "ModelSpec", "TaskError", "TaskSpec", "ToolSpec", "load_task"]


class TaskError(ValueError):
    """A task file that cannot be used; the message names the file and the place."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    base_url: str | None = None
    name: str | None = None
    api: Literal["completions", "chat"] | None = None
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


class ToolSpec(_Strict):
    import_: str | None = Field(None, alias="import")
    builtin: Literal["python", "browser"] | None = None
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

    def tool_specs(self) -> list[ToolSpec]:
        out = []
        for t in self.tools:
            if isinstance(t, str):
                key = "builtin" if t in ("python", "browser") else "import"
                out.append(ToolSpec.model_validate({key: t}))
            else:
                out.append(t)
        return out


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


def load_task(path: str | Path) -> TaskSpec:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TaskError(f"cannot read task file {p}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TaskError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise TaskError(f"{p}: a task file is a mapping of keys (instructions, input, tools, ...)")
    try:
        return TaskSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            where = ".".join(str(x) for x in loc)
            if err["type"] == "extra_forbidden":
                near = difflib.get_close_matches(str(loc[-1]), _fields_at(loc), n=1)
                hint = f" (did you mean `{near[0]}`?)" if near else ""
                problems.append(f"unknown key `{where}`{hint}")
            elif err["type"] == "missing":
                problems.append(f"missing required key `{where}`")
            else:
                problems.append(f"`{where}`: {err['msg']}")
        raise TaskError(f"{p}: " + "; ".join(dict.fromkeys(problems))) from None


def import_object(ref: str) -> Any:
    """`package.module:attribute` → the object, with a clear error."""
    module_name, _, attr = ref.partition(":")
    if not attr:
        raise TaskError(f"import `{ref}` must look like package.module:name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskError(f"cannot import module `{module_name}` for `{ref}`: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise TaskError(f"module `{module_name}` has no `{attr}` (from `{ref}`)") from None


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

    from harmonygraph.agent import Agent
    from harmonygraph.graphs.agent_loop import RunLimits
    from harmonygraph.models import make_model
    from harmonygraph.models.base import ModelSettings

    tools: list[Any] = []
    for ts in spec.tool_specs():
        if ts.builtin == "python":
            from harmonygraph.tools.python import PythonToolset

            tools.append(PythonToolset(**ts.options))
        elif ts.builtin == "browser":
            from harmonygraph.tools.browser import BrowserToolset

            tools.append(BrowserToolset(**ts.options))
        elif ts.import_:
            obj = import_object(ts.import_)
            if isinstance(obj, list | tuple):
                tools.extend(obj)
            else:
                tools.append(obj() if isinstance(obj, type) else obj)
        else:
            raise TaskError("each tool needs `import: module:name` or `builtin: python|browser`")

    output_type: Any = spec.output_schema
    if spec.output_type:
        output_type = import_object(spec.output_type)
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
