"""The tool contract and the registry: schemas from type hints, and every bad call answered."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import pytest
from harmonygraph.tools import (
    SchemaTool,
    Tool,
    ToolContext,
    ToolError,
    ToolOutput,
    Toolset,
    tool,
    tools_from_schemas,
)
from harmonygraph.tools.registry import ToolCall, ToolRegistry
from pydantic import BaseModel


class Point(BaseModel):
    x: float
    y: float


@tool
def distance(a: Point, b: Point, unit: Literal["m", "km"] = "m") -> float:
    """Distance between two points."""
    return ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5


@tool(timeout=0.2)
async def slow(seconds: float) -> str:
    """Sleeps."""
    await asyncio.sleep(seconds)
    return "woke"


@tool
def needs_ctx(ctx: ToolContext, word: str) -> str:
    """Echoes the run id."""
    return f"{ctx.run_id}:{word}"


@tool
def broken(n: int) -> int:
    """Always fails."""
    raise ZeroDivisionError("division by zero")


@tool
def refuses(n: int) -> int:
    """Fails on purpose, with a message for the model."""
    raise ToolError(f"n={n} is too large; use a number below 10")


def call(reg: ToolRegistry, recipient: str, args: str):
    return asyncio.run(reg.call(ToolCall(recipient, args), ToolContext(run_id="r1")))


def test_schema_from_type_hints() -> None:
    assert distance.name == "distance"
    assert distance.description == "Distance between two points."
    schema = distance.parameters
    assert schema["required"] == ["a", "b"]
    assert schema["properties"]["unit"] == {"default": "m", "enum": ["m", "km"], "type": "string"}
    assert "$ref" in json.dumps(schema)  # nested models stay references here; harmony flattens them
    assert "ctx" not in needs_ctx.parameters["properties"]


def test_tool_names_must_be_identifiers() -> None:
    with pytest.raises(ValueError, match="not an identifier"):
        SchemaTool("bad name", "", {"type": "object"}, lambda a: a)
    with pytest.raises(ValueError, match="not an identifier"):
        Toolset(namespace="my tools")


def test_raw_schema_tool_validates() -> None:
    t = SchemaTool(
        "f",
        "d",
        {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        lambda a: a["n"] * 2,
    )
    reg = ToolRegistry.from_items([t])
    assert call(reg, "functions.f", '{"n": 4}').output.text == "8"
    bad = call(reg, "functions.f", '{"n": "4"}')
    assert bad.status == "invalid_arguments" and "'4' is not of type 'integer'" in bad.output.text


def test_every_bad_call_is_answered_not_raised() -> None:
    reg = ToolRegistry.from_items([distance, slow, needs_ctx, broken, refuses], max_result_chars=50)
    ok = call(reg, "functions.distance", '{"a": {"x": 0, "y": 0}, "b": {"x": 3, "y": 4}}')
    assert ok.status == "ok" and ok.output.text == "5.0"

    unknown = call(reg, "functions.nope", "{}")
    assert unknown.status == "unknown_tool"
    assert (
        "unknown tool `functions.nope`" in unknown.output.text
        and "functions.distance" in unknown.output.text
    )

    not_enabled = call(reg, "python", "print(1)")
    assert "the python tool is not available" in not_enabled.output.text

    bad_json = call(reg, "functions.distance", '{"a": {"x": 0, ')
    assert bad_json.status == "invalid_arguments" and "not valid JSON" in bad_json.output.text

    missing = call(reg, "functions.distance", '{"a": {"x": 0, "y": 0}}')
    assert "missing required argument `b`" in missing.output.text

    wrong_type = call(
        reg, "functions.distance", '{"a": {"x": "far", "y": 0}, "b": {"x": 1, "y": 1}}'
    )
    assert "`a.x`" in wrong_type.output.text and "'far'" in wrong_type.output.text

    extra = call(
        reg, "functions.distance", '{"a": {"x": 0, "y": 0}, "b": {"x": 1, "y": 1}, "z": 1}'
    )
    assert "unknown argument `z`" in extra.output.text

    timeout = call(reg, "functions.slow", '{"seconds": 5}')
    assert timeout.status == "timeout" and "did not finish within 0.2 s" in timeout.output.text

    raised = call(reg, "functions.broken", '{"n": 1}')
    assert raised.status == "error" and "ZeroDivisionError: division by zero" in raised.output.text

    refused = call(reg, "functions.refuses", '{"n": 99}')
    assert refused.output.text == "error: n=99 is too large; use a number below 10"

    ctx = call(reg, "functions.needs_ctx", '{"word": "' + "w" * 80 + '"}')
    assert (
        ctx.truncated and ctx.output.text.startswith("r1:www") and "[truncated: " in ctx.output.text
    )


def test_bare_recipient_resolves_to_functions() -> None:
    reg = ToolRegistry.from_items([distance])
    res = call(reg, "distance", '{"a": {"x": 0, "y": 0}, "b": {"x": 0, "y": 2}}')
    assert res.recipient == "functions.distance" and res.output.text == "2.0"


def test_custom_namespace_and_duplicates() -> None:
    class Echo(Tool):
        async def invoke(self, args, ctx):  # type: ignore[no-untyped-def]
            return ToolOutput(text=json.dumps(args))

    ns = Toolset([Echo("say")], namespace="speech")
    reg = ToolRegistry.from_items([distance, ns])
    assert reg.recipients() == ["functions.distance", "speech.say"]
    assert call(reg, "speech.say", '{"w": 1}').output.text == '{"w": 1}'
    with pytest.raises(ValueError, match="already has a tool named"):
        Toolset([distance, distance])


def test_tools_from_openai_style_definitions() -> None:
    seen = []
    defs = [
        {
            "type": "function",
            "function": {
                "name": "math.factorial",
                "description": "n!",
                "parameters": {
                    "type": "dict",
                    "properties": {"n": {"type": "integer"}},
                    "required": ["n"],
                },
            },
        }
    ]
    (t,) = tools_from_schemas(defs, lambda name, args: seen.append((name, args)) or "ok")
    assert t.name == "math_factorial" and t.parameters["type"] == "object"
    reg = ToolRegistry.from_items([t])
    assert call(reg, "functions.math_factorial", '{"n": 5}').output.text == "ok"
    assert seen == [("math.factorial", {"n": 5})]


def test_a_sync_tool_that_never_returns_is_abandoned_and_the_process_still_exits() -> None:
    """A thread cannot be cancelled: the run goes on, and nothing waits for it at exit."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import threading
        from harmonygraph import Agent
        from harmonygraph.tracing import ScriptedModel
        from harmonygraph.tools import tool

        @tool(timeout=0.2)
        def stuck() -> str:
            \"\"\"Never returns.\"\"\"
            threading.Event().wait()
            return "never"

        call = ("<|channel|>commentary to=functions.stuck <|constrain|>json"
                "<|message|>{}<|call|>")
        final = "<|channel|>final<|message|>gave up<|return|>"
        result = Agent(ScriptedModel([call, final]), tools=[stuck]).run("go")
        print([m.content for m in result.messages if m.role.value == "tool"][0])
        print(result.text)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "error: `functions.stuck` did not finish within 0.2 s and was abandoned "
        "(its result will be ignored)",
        "gave up",
    ]
