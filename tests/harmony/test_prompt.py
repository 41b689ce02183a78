"""System and developer messages, compared with openai-harmony's own expected renderings."""

from __future__ import annotations

from typing import Any

import pytest
from harmonygraph.harmony import (
    ConversationRenderer,
    DeveloperConfig,
    Message,
    ResponseFormat,
    SystemConfig,
    builtin_namespaces,
    get_encoding,
    parse_reasoning,
)
from harmonygraph.harmony.prompt import render_developer, render_system
from openai_harmony import ToolDescription, ToolNamespaceConfig

from ._data import fixture_text

ROBOT = "Answer the user's questions like a robot."


def prompt_text(
    system: SystemConfig, developer: DeveloperConfig | None = None, *messages: Message
) -> str:
    return ConversationRenderer(system, developer).render(list(messages)).text


def functions(*tools: ToolDescription) -> tuple[ToolNamespaceConfig, ...]:
    return (ToolNamespaceConfig(name="functions", description=None, tools=list(tools)),)


def test_simple_convo() -> None:
    got = prompt_text(SystemConfig(current_date=None), None, Message.user("What is 2 + 2?"))
    assert got == fixture_text("test_simple_convo")


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
@pytest.mark.parametrize("instruction", [True, False])
def test_simple_convo_with_effort(effort: Any, instruction: bool) -> None:
    dev = DeveloperConfig(instructions=ROBOT) if instruction else None
    got = prompt_text(
        SystemConfig(current_date=None, reasoning=effort),
        dev,
        Message.user("What is the capital of the largest country in the world?"),
    )
    suffix = "" if instruction else "_no_instruction"
    assert got == fixture_text(f"test_simple_convo_{effort}_effort{suffix}")


@pytest.mark.parametrize(
    ("fixture", "system", "question"),
    [
        (
            "test_reasoning_system_message",
            SystemConfig(current_date=None, channels=("analysis", "final")),
            "What is 2 + 2?",
        ),
        (
            "test_reasoning_system_message_no_instruction",
            SystemConfig(current_date=None, reasoning="high", channels=("analysis", "final")),
            "What is the best place to eat candy in the world?",
        ),
        (
            "test_reasoning_system_message_with_dates",
            SystemConfig(
                current_date="2021-01-01",
                knowledge_cutoff="2021-01",
                channels=("analysis", "final"),
            ),
            "What is 42 * pi?",
        ),
    ],
)
def test_reasoning_system_messages(fixture: str, system: SystemConfig, question: str) -> None:
    assert prompt_text(system, None, Message.user(question)) == fixture_text(fixture)


@pytest.mark.parametrize(
    ("fixture", "tools"),
    [
        ("test_no_tools", ()),
        ("test_browser_tool_only", ("browser",)),
        ("test_browser_and_python_tool", ("browser", "python")),
    ],
)
def test_builtin_tool_namespaces(fixture: str, tools: tuple[str, ...]) -> None:
    system = SystemConfig(current_date="2025-06-28", builtin_tools=builtin_namespaces(tools))
    assert prompt_text(system) == fixture_text(fixture)


def test_browser_and_function_tool() -> None:
    lookup = ToolDescription.new(
        "lookup_weather",
        "Use this tool to lookup the weather in a given location. Call it with the parameter "
        "'location', can be any textual description of a location.",
        parameters={
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    )
    system = SystemConfig(current_date="2025-06-28", builtin_tools=builtin_namespaces(["browser"]))
    got = prompt_text(system, DeveloperConfig(tools=functions(lookup)))
    assert got == fixture_text("test_browser_and_function_tool")


def test_render_functions_with_parameters() -> None:
    fmt = {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}
    tools = [
        ToolDescription.new("get_location", "Gets the location of the user."),
        ToolDescription.new(
            "get_current_weather",
            "Gets the current weather in the provided location.",
            parameters={
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "format": fmt,
                },
                "required": ["location"],
            },
        ),
        ToolDescription.new(
            "get_multiple_weathers",
            "Gets the current weather in the provided list of locations.",
            parameters={
                "type": "object",
                "properties": {
                    "locations": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": 'List of city and state, e.g. ["San Francisco, CA", "New York, NY"]',
                    },
                    "format": fmt,
                },
                "required": ["locations"],
            },
        ),
        ToolDescription.new(
            "kitchensink",
            "A function with various complex schemas.",
            parameters={
                "description": "params object",
                "type": "object",
                "properties": {
                    "string": {
                        "type": "string",
                        "title": "STRING",
                        "description": "A string",
                        "examples": ["hello", "world"],
                    },
                    "string_nullable": {
                        "type": "string",
                        "nullable": True,
                        "description": "A nullable string",
                        "default": "the default",
                    },
                    "string_enum": {"type": "string", "enum": ["a", "b", "c"]},
                    "oneof_string_or_number": {
                        "oneOf": [
                            {"type": "string", "default": "default_string_in_oneof"},
                            {"type": "number", "description": "numbers can happen too"},
                        ],
                        "description": "a oneof",
                        "default": 20,
                    },
                },
            },
        ),
    ]
    got = prompt_text(
        SystemConfig(current_date="2025-06-28", reasoning="high"),
        DeveloperConfig(instructions="Always respond in riddles", tools=functions(*tools)),
        Message.user("What is the weather like in SF?"),
    )
    # One deliberate difference: titles of nested properties are dropped (pydantic puts
    # one on every field, where it only repeats the name).
    expected = fixture_text("test_render_functions_with_parameters")
    assert "// STRING\n//\n" in expected
    assert got == expected.replace("// STRING\n//\n", "")


def test_system_message_fields() -> None:
    system = SystemConfig(
        identity="You are Harmonia, a research agent.",
        knowledge_cutoff="2024-06",
        current_date="2026-11-21",
        reasoning="low",
        builtin_tools=builtin_namespaces(["python"]),
    )
    text = get_encoding().decode(render_system(system, has_function_tools=False))
    assert text.startswith("<|start|>system<|message|>You are Harmonia, a research agent.\n")
    assert "Knowledge cutoff: 2024-06\nCurrent date: 2026-11-21\n\nReasoning: low\n" in text
    assert "## python\n" in text and "namespace browser" not in text
    assert (
        "# Valid channels: analysis, commentary, final. Channel must be included for every message."
        in text
    )
    assert "Calls to these tools must go to the commentary channel" not in text
    with_functions = get_encoding().decode(render_system(system, has_function_tools=True))
    assert with_functions.endswith(
        "Channel must be included for every message.\nCalls to these tools must go to the "
        "commentary channel: 'functions'.<|end|>"
    )


def test_function_tools_turn_on_the_commentary_line() -> None:
    tool = ToolDescription.new("f", "Does f.", parameters={"type": "object", "properties": {}})
    with_tools = prompt_text(
        SystemConfig(current_date=None), DeveloperConfig(tools=functions(tool))
    )
    without = prompt_text(SystemConfig(current_date=None), DeveloperConfig(instructions="Hi."))
    line = "Calls to these tools must go to the commentary channel: 'functions'."
    assert line in with_tools and line not in without
    # An empty namespace is no function tool.
    assert line not in prompt_text(
        SystemConfig(current_date=None), DeveloperConfig(tools=functions())
    )


def test_empty_developer_message_is_left_out() -> None:
    assert render_developer(DeveloperConfig()) == []
    assert "<|start|>developer" not in prompt_text(SystemConfig(current_date=None))


def test_response_format_alone_and_after_tools() -> None:
    fmt = ResponseFormat(
        "answer",
        {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        "Yes or no.\nNothing else.",
    )
    alone = get_encoding().decode(render_developer(DeveloperConfig(response_format=fmt)))
    assert alone == (
        "<|start|>developer<|message|># Response Formats\n\n## answer\n\n// Yes or no.\n// Nothing else.\n"
        '{"type":"object","properties":{"ok":{"type":"boolean"}}}<|end|>'
    )
    tool = ToolDescription.new("f", "Does f.")
    both = get_encoding().decode(
        render_developer(DeveloperConfig(tools=functions(tool), response_format=fmt))
    )
    assert "} // namespace functions\n\n# Response Formats\n\n## answer\n\n" in both
    assert both.endswith("<|end|>") and both.count("<|end|>") == 1


def test_reasoning_levels() -> None:
    assert parse_reasoning(" High ") == "high"
    with pytest.raises(ValueError, match="low, medium or high"):
        parse_reasoning("max")


def test_unknown_builtin_tool() -> None:
    with pytest.raises(ValueError, match="unknown built-in tool 'shell'"):
        builtin_namespaces(["browser", "shell"])


def test_response_format_section_keeps_special_token_text_as_text() -> None:
    """Instructions that mention "<|end|>" must not end the developer message early."""
    from harmonygraph.harmony import get_encoding
    from harmonygraph.harmony.encoding import END
    from harmonygraph.harmony.prompt import DeveloperConfig, ResponseFormat
    from pydantic import BaseModel

    class Reply(BaseModel):
        text: str

    tokens = render_developer(
        DeveloperConfig(
            instructions="Never write <|end|> in a reply.",
            response_format=ResponseFormat.from_type(Reply),
        )
    )
    assert tokens.count(END) == 1 and tokens[-1] == END
    text = get_encoding().decode(tokens)
    assert "Never write <|end|> in a reply.\n\n# Response Formats\n\n## reply\n\n" in text
