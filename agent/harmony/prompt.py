"""The system and developer messages: who the model is, what it may call, what it must return."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from harmonygraph.harmony.encoding import MESSAGE, get_encoding
from harmonygraph.harmony.schema import flatten_schema, schema_of
from openai_harmony import (
    DeveloperContent,
    ReasoningEffort,
    RenderOptions,
    Role,
    SystemContent,
    ToolDescription,
    ToolNamespaceConfig,
)
from openai_harmony import Message as HMessage

__all__ = [
    "DEFAULT_IDENTITY",
    "DeveloperConfig",
    "ReasoningLevel",
    "ResponseFormat",
    "SystemConfig",
    "render_developer",
    "render_system",
]

ReasoningLevel = Literal["low", "medium", "high"]
DEFAULT_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
_EFFORT = {
    "low": ReasoningEffort.LOW,
    "medium": ReasoningEffort.MEDIUM,
    "high": ReasoningEffort.HIGH,
}


def parse_reasoning(value: str) -> ReasoningLevel:
    level = value.strip().lower()
    if level not in _EFFORT:
        raise ValueError(f"reasoning effort must be low, medium or high, not {value!r}")
    return level  # type: ignore[return-value]


@dataclass(frozen=True)
class SystemConfig:
    """The system message. Built-in tool namespaces (browser, python) belong here."""

    identity: str = DEFAULT_IDENTITY
    knowledge_cutoff: str = "2024-06"
    current_date: str | None = field(default_factory=lambda: dt.date.today().isoformat())
    reasoning: ReasoningLevel = "medium"
    builtin_tools: tuple[ToolNamespaceConfig, ...] = ()
    channels: tuple[str, ...] = ("analysis", "commentary", "final")


@dataclass(frozen=True)
class ResponseFormat:
    """A structured-output format, rendered under `# Response Formats`."""

    name: str
    schema: dict[str, Any]
    description: str = ""

    @classmethod
    def from_type(cls, output_type: Any, name: str | None = None) -> ResponseFormat:
        schema = schema_of(output_type)
        fmt_name = name or schema.get("title") or getattr(output_type, "__name__", "response")
        description = schema.get("description", "")
        return cls(
            name=_snake(str(fmt_name)), schema=flatten_schema(schema), description=description
        )


@dataclass(frozen=True)
class DeveloperConfig:
    """The developer message: instructions, function tools, response format."""

    instructions: str | None = None
    tools: tuple[ToolNamespaceConfig, ...] = ()
    response_format: ResponseFormat | None = None

    @property
    def has_function_tools(self) -> bool:
        return any(ns.tools for ns in self.tools)

    def is_empty(self) -> bool:
        return not (self.instructions or self.has_function_tools or self.response_format)


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (name[i - 1].islower() or name[i - 1].isdigit()):
            out.append("_")
        out.append(ch.lower() if ch.isalnum() else "_")
    return "".join(out).strip("_") or "response"


def flatten_namespace(ns: ToolNamespaceConfig) -> ToolNamespaceConfig:
    """The namespace with each tool's parameters flattened for harmony's renderer."""
    return ToolNamespaceConfig(
        name=ns.name,
        description=ns.description,
        tools=[
            ToolDescription(
                name=t.name,
                description=t.description,
                parameters=flatten_schema(t.parameters) if t.parameters else None,
            )
            for t in ns.tools
        ],
    )


def render_system(config: SystemConfig, *, has_function_tools: bool) -> list[int]:
    content = (
        SystemContent.new()
        .with_model_identity(config.identity)
        .with_knowledge_cutoff(config.knowledge_cutoff)
        .with_reasoning_effort(_EFFORT[config.reasoning])
        .with_required_channels(list(config.channels))
    )
    if config.current_date:
        content = content.with_conversation_start_date(config.current_date)
    for ns in config.builtin_tools:
        content = content.with_tools(ns)
    msg = HMessage.from_role_and_content(Role.SYSTEM, content)
    # The flag adds the line that sends `functions` calls to the commentary channel.
    return get_encoding().render(
        msg, RenderOptions(conversation_has_function_tools=has_function_tools)
    )


def render_developer(config: DeveloperConfig) -> list[int]:
    """The developer message, or nothing when there is nothing to say."""
    if config.is_empty():
        return []
    enc = get_encoding()
    content = DeveloperContent.new()
    if config.instructions:
        content = content.with_instructions(config.instructions)
    for ns in config.tools:
        if ns.tools:
            content = content.with_tools(flatten_namespace(ns))
    tokens = enc.render(HMessage.from_role_and_content(Role.DEVELOPER, content))
    fmt = config.response_format
    if fmt is None:
        return tokens
    # openai-harmony has no API for `# Response Formats`; the format spec puts it at the
    # end of the developer message as `## name`, a `//` description, then the schema.
    # The header's tokens are kept; the body is encoded again as ordinary text, so text
    # that looks like a special token ("<|end|>" in the instructions) stays text.
    body_at = tokens.index(MESSAGE) + 1  # the header's <|message|>: content is all text
    body = enc.decode(tokens[body_at:-1])
    section = f"# Response Formats\n\n## {fmt.name}\n\n"
    if fmt.description:
        section += "".join(f"// {line}\n" for line in fmt.description.splitlines())
    section += json.dumps(fmt.schema, ensure_ascii=False, separators=(",", ":"))
    text = f"{body}\n\n{section}" if body else section
    return [*tokens[:body_at], *enc.encode(text, disallowed_special=()), tokens[-1]]


def builtin_namespaces(names: Sequence[str]) -> tuple[ToolNamespaceConfig, ...]:
    out = []
    for name in names:
        if name == "browser":
            out.append(ToolNamespaceConfig.browser())
        elif name == "python":
            out.append(ToolNamespaceConfig.python())
        else:
            raise ValueError(f"unknown built-in tool {name!r} (expected browser or python)")
    return tuple(out)
