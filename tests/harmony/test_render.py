"""The incremental renderer against openai-harmony's own renderer, and the history rules."""

from __future__ import annotations

import hashlib
import random
from array import array
from typing import Any

import harmonygraph.harmony.render as render_mod
import openai_harmony as oh
import pytest
from harmonygraph.harmony import (
    ConversationRenderer,
    DeveloperConfig,
    Message,
    Role,
    SystemConfig,
    builtin_namespaces,
    get_encoding,
    parse_completion_text,
    visible_history,
)
from harmonygraph.harmony.encoding import END, RETURN, START
from harmonygraph.harmony.render import to_harmony
from openai_harmony import ToolDescription, ToolNamespaceConfig

from ._data import fixture_text

WEATHER = ToolDescription.new(
    "get_weather",
    "Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
)
SYSTEM = SystemConfig(
    current_date="2025-06-28",
    reasoning="high",
    builtin_tools=builtin_namespaces(["browser", "python"]),
)
DEVELOPER = DeveloperConfig(
    instructions="Answer briefly.",
    tools=(ToolNamespaceConfig(name="functions", description=None, tools=[WEATHER]),),
)


def theirs(messages: list[Message]) -> list[int]:
    """openai-harmony's rendering of the same prompt, built with its own API."""
    system = (
        oh.SystemContent.new()
        .with_conversation_start_date("2025-06-28")
        .with_reasoning_effort(oh.ReasoningEffort.HIGH)
        .with_browser_tool()
        .with_python_tool()
    )
    developer = (
        oh.DeveloperContent.new()
        .with_instructions("Answer briefly.")
        .with_function_tools([WEATHER])
    )
    convo = oh.Conversation.from_messages(
        [
            oh.Message.from_role_and_content(oh.Role.SYSTEM, system),
            oh.Message.from_role_and_content(oh.Role.DEVELOPER, developer),
            *(to_harmony(m) for m in visible_history(messages)),
        ]
    )
    return get_encoding().render_conversation_for_completion(
        convo, oh.Role.ASSISTANT, oh.RenderConversationConfig(auto_drop_analysis=False)
    )


def sha(tokens: list[int]) -> str:
    return hashlib.sha256(array("I", tokens).tobytes()).hexdigest()


def call(args: str, channel: str = "commentary", to: str = "functions.get_weather") -> Message:
    return Message.assistant(args, channel=channel, recipient=to, content_type="<|constrain|>json")


def agent_run() -> list[list[Message]]:
    """The conversation after each step of a three-turn agent run with tool calls."""
    turns: list[list[Message]] = [
        [
            Message.user("Weather in Paris and Rome?"),
            Message.assistant("Two cities: call the tool twice.", channel="analysis"),
            call('{"city": "Paris"}'),
            Message.tool_result("functions.get_weather", '{"temp": 21}'),
            Message.assistant("Paris done, now Rome.", channel="analysis"),
            call('{"city": "Rome"}', channel="analysis"),  # a call on the analysis channel
            Message.tool_result("functions.get_weather", '{"temp": 25}'),
            Message.assistant("Paris 21°C, Rome 25°C.", channel="final"),
        ],
        [
            Message.user("Search the news about it."),
            Message.assistant("Use the browser.", channel="analysis"),
            Message.assistant("Looking it up.", channel="commentary"),  # a preamble
            call('{"query": "heatwave"}', channel="analysis", to="browser.search"),
            Message.tool_result("browser.search", "[0] Heatwave in Europe (news.example)"),
            Message.assistant("Now compute the average in python.", channel="analysis"),
            Message(Role.ASSISTANT, "print((21+25)/2)", "analysis", "python", "code"),
            Message.tool_result("python", "23.0"),
            Message.assistant("A heatwave; the average is 23°C.", channel="final"),
        ],
        [
            Message.user("Thanks! And Oslo?"),
            Message.assistant("One more call.", channel="analysis"),
        ],
    ]
    steps: list[list[Message]] = []
    history: list[Message] = []
    for turn in turns:
        for message in turn:
            history = [*history, message]
            steps.append(history)
    return steps


def test_incremental_render_equals_openai_harmony_at_every_step() -> None:
    renderer = ConversationRenderer(SYSTEM, DEVELOPER)
    prompts = []
    for history in agent_run():
        prompt = renderer.render(history)
        expected = theirs(history)
        assert prompt.tokens == expected, len(history)
        assert prompt.length == len(expected)
        assert prompt.sha256 == sha(expected)
        prompts.append((prompt, expected))
    # A prompt taken earlier still reads its own tokens after the renderer moved on.
    assert all(p.tokens == e for p, e in prompts)
    assert prompts[-1][0].text.endswith(
        "<|start|>user<|message|>Thanks! And Oslo?<|end|>"
        "<|start|>assistant<|channel|>analysis<|message|>One more call.<|end|><|start|>assistant"
    )


def test_only_new_messages_are_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the incremental renderer: a step converts only what is new."""
    seen: list[Message] = []
    real = render_mod.render_message

    def spy(message: Message) -> Any:
        seen.append(message)
        return real(message)

    monkeypatch.setattr(render_mod, "render_message", spy)
    renderer = ConversationRenderer(SYSTEM, DEVELOPER)
    steps = agent_run()
    renderer.render(steps[5])
    seen.clear()
    renderer.render(steps[6])
    assert seen == [steps[6][-1]]
    # The end of a turn drops its analysis: earlier messages are reused from the cache.
    seen.clear()
    renderer.render(steps[8])  # + final, + next user message
    assert seen == steps[8][-2:]
    assert renderer.render(steps[8]).tokens == theirs(steps[8])


def test_random_edits_match_a_full_render() -> None:
    """Appends, truncations, replacements and equal-but-new message objects (a restored
    checkpoint) in any order: the prompt is always the full render of the visible history."""
    rng = random.Random(7)

    def make(kind: str, i: int) -> Message:
        return {
            "user": Message.user(f"question {i}"),
            "analysis": Message.assistant(f"thinking {i}", channel="analysis"),
            "call": call(f'{{"city": "c{i}"}}', channel=rng.choice(["commentary", "analysis"])),
            "result": Message.tool_result("functions.get_weather", f"result {i}"),
            "final": Message.assistant(f"answer {i}"),
            "preamble": Message.assistant(f"working on {i}", channel="commentary"),
        }[kind]

    kinds = ["user", "analysis", "call", "result", "final", "preamble"]
    enc = get_encoding()
    prefix = ConversationRenderer(SYSTEM, DEVELOPER).prefix_tokens
    for _ in range(15):
        renderer = ConversationRenderer(SYSTEM, DEVELOPER)
        messages: list[Message] = []
        for step in range(16):
            op = rng.random()
            if op < 0.7 or not messages:
                messages = messages + [
                    make(rng.choice(kinds), step) for _ in range(rng.randint(1, 3))
                ]
            elif op < 0.8:
                messages = messages[: rng.randrange(len(messages))]
            elif op < 0.9:
                j = rng.randrange(len(messages))
                messages = [*messages[:j], make(rng.choice(kinds), 100 + step), *messages[j + 1 :]]
            else:
                messages = [Message.from_dict(m.to_dict()) for m in messages]
            # The system and developer prefix is checked above; here the history only.
            expected = prefix + enc.render_conversation_for_completion(
                oh.Conversation.from_messages([to_harmony(m) for m in visible_history(messages)]),
                oh.Role.ASSISTANT,
                oh.RenderConversationConfig(auto_drop_analysis=False),
            )
            prompt = renderer.render(messages)
            assert prompt.tokens == expected
            assert prompt.sha256 == sha(expected)


def test_visible_history_drops_earlier_turns_analysis_only() -> None:
    steps = agent_run()
    during = steps[6]  # first turn, tool calls still going
    assert visible_history(during) == during  # analysis kept while the turn is ongoing
    after = steps[-1]
    visible = visible_history(after)
    reasoning = [m for m in visible if m.is_reasoning]
    # Only the running turn's reasoning is left; the calls made on the analysis
    # channel stay, so every tool result still follows its call.
    assert [m.content for m in reasoning] == ["One more call."]
    assert call('{"city": "Rome"}', channel="analysis") in visible
    assert any(m.recipient == "python" for m in visible)
    for i, m in enumerate(visible):
        if m.role is Role.TOOL:
            assert visible[i - 1].is_tool_call and visible[i - 1].recipient == m.name


def test_tool_results_are_authored_by_the_tool_to_the_assistant() -> None:
    renderer = ConversationRenderer(SYSTEM, DEVELOPER)
    text = renderer.render(
        [
            Message.tool_result("functions.get_weather", "{}"),
            Message.tool_result("browser.search", "results"),
            Message.tool_result("python", "42"),
        ]
    ).text
    for name, body in (
        ("functions.get_weather", "{}"),
        ("browser.search", "results"),
        ("python", "42"),
    ):
        assert f"<|start|>{name} to=assistant<|channel|>commentary<|message|>{body}<|end|>" in text


def test_stored_return_goes_back_into_history_as_end() -> None:
    completion = "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>4<|return|>"
    answer = parse_completion_text(completion).messages
    assert answer[-1].stop == "return"
    renderer = ConversationRenderer(SYSTEM)
    history = [Message.user("2+2?"), *answer, Message.user("and 3+3?")]
    tokens = renderer.render(history).tokens
    assert RETURN not in tokens
    assert renderer.message_tokens(answer[-1])[-1] == END
    assert "<|channel|>final<|message|>4<|end|><|start|>user" in renderer.render(history).text
    assert "Easy." not in renderer.render(history).text  # that turn's analysis is gone


def test_prompt_ends_with_the_assistant_header(enc: Any) -> None:
    prompt = ConversationRenderer(SYSTEM).render([Message.user("hi")])
    assert prompt.tokens[-2:] == [START, *enc.encode("assistant")]
    assert (
        prompt.tokens[: len(ConversationRenderer(SYSTEM).prefix_tokens)]
        == ConversationRenderer(SYSTEM).prefix_tokens
    )


@pytest.mark.parametrize(
    ("fixture", "auto_drop"),
    [
        ("test_dropping_cot_by_default", True),
        ("test_does_not_drop_if_ongoing_analysis", True),
        ("test_preserve_cot", False),
    ],
)
def test_history_fixtures_of_openai_harmony(fixture: str, auto_drop: bool) -> None:
    """openai-harmony's own fixtures (system message aside): the same history rules."""
    expected = fixture_text(fixture)
    q = "What is 2 + 2?"
    if fixture == "test_does_not_drop_if_ongoing_analysis":
        history = [
            Message.user("What is the weather in SF?"),
            Message.assistant(
                "User asks: “What is the weather in SF?” We need to use lookup_weather tool.",
                channel="analysis",
            ),
            call('{"location": "San Francisco"}', to="functions.lookup_weather"),
            Message(
                Role.TOOL,
                '{"temperature": 20, "description": "sunny"}',
                name="functions.lookup_weather",
            ),
        ]
    else:
        thought = (
            "User asks: “What is 2 + 2?” Simple arithmetic. Provide answer."
            if auto_drop
            else 'User asks a simple question: "What is 2 + 2?" The answer: 4.'
        )
        history = [
            Message.user(q),
            Message.assistant(thought, channel="analysis"),
            Message.assistant("2 + 2 equals 4."),
            Message.user("What about 9 / 2?"),
        ]
    renderer = ConversationRenderer(SystemConfig(current_date=None))
    prefix = len(renderer.prefix_tokens)
    if auto_drop:
        got = renderer.render(history).tokens[prefix:]
    else:  # keeping all analysis is openai-harmony's option, not our history rule
        got = [t for m in history for t in renderer.message_tokens(m)] + renderer.render([]).tokens[
            prefix:
        ]
    assert get_encoding().decode(got) == expected
