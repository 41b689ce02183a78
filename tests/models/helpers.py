"""Shared scripted completions, tool configs and request builders for the model tests."""

from __future__ import annotations

from harmonygraph.harmony import DeveloperConfig, Message, SystemConfig
from harmonygraph.models import ModelRequest, ModelSettings, RetryPolicy
from openai_harmony import ToolDescription, ToolNamespaceConfig

# Completions as gpt-oss writes them (after the prompt's `<|start|>assistant`).
CALL = (
    "<|channel|>analysis<|message|>The user wants the weather; call get_weather.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city":"Paris"}<|call|>'
)
FINAL = (
    "<|channel|>analysis<|message|>The tool says sunny, 21 °C.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>It is sunny in Paris (21 °C).<|return|>"
)
TOOL_RESULT = Message.tool_result("functions.get_weather", '{"sky":"sunny","celsius":21}')

WEATHER = ToolNamespaceConfig(
    name="functions",
    description=None,
    tools=[
        ToolDescription.new(
            "get_weather",
            "Current weather for a city.",
            {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        )
    ],
)
SYSTEM = SystemConfig(current_date="2025-08-05", reasoning="high")
DEVELOPER = DeveloperConfig(instructions="Answer briefly.", tools=(WEATHER,))
# Tests retry fast; the policy's shape is what is under test, not its default delays.
FAST_RETRY = RetryPolicy(base_delay=0.01, cap=0.05)


def make_request(*messages: Message, settings: ModelSettings | None = None) -> ModelRequest:
    msgs = messages or (Message.user("What is the weather in Paris?"),)
    return ModelRequest(SYSTEM, DEVELOPER, tuple(msgs), settings or ModelSettings())
