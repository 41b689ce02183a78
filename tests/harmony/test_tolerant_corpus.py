"""Tolerant reading against completions_more.jsonl: real llama.cpp transcripts, rollout
traces and other projects' parser fixtures, each with the messages a tolerant reader
should recover (`expected.messages`; a `content` of null is left open by the row).

Every row is read whole, from token ids, and streamed (chars, tokens, random chunks);
all must agree, messages, skipped text and repairs alike. Every repair is counted in
`ParseResult.repairs`, and the corpus' own damage labels say which kinds must show.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from harmonygraph.harmony import (
    ContentDelta,
    HarmonyParseError,
    HeaderDone,
    MessageDone,
    ParseEvent,
    ParseResult,
    RepairKind,
    Role,
    StreamParser,
    parse_completion_text,
    parse_completion_tokens,
)
from harmonygraph.harmony.repairs import ToolNameError, clean_tool_name

from ._data import more_rows

K = RepairKind
# A corpus damage label -> the repairs of which at least one must be recorded for it.
DAMAGE: dict[str, set[RepairKind]] = {
    "special-tokens-stripped": {K.STRIPPED_TOKENS},
    "bare-start-token": {K.MISSING_ROLE},
    "newline-separated-tokens": {K.NEWLINE_SEPARATORS},
    "missing-start-assistant": {K.MISSING_START, K.MISSING_END, K.STRIPPED_TOKENS},
    "missing-end-token": {K.MISSING_END},
    "no-end-token": {K.MISSING_END},
    "no-call-token": {K.MISSING_END},
    "unknown-channel": {K.UNKNOWN_CHANNEL},
    "garbled-channel": {K.UNKNOWN_CHANNEL},
    "garbled-header": {K.GARBLED_HEADER},
    "constrain-garbage": {K.GARBLED_HEADER},
    "missing-message-token": {K.MISSING_MESSAGE, K.GARBLED_HEADER},
    "call-header-inside-analysis": {K.RECIPIENT_FROM_CONTENT},
    "repeated-role": {K.REPEATED_ROLE},
    "double-channel": {K.DOUBLE_CHANNEL},
    "missing-header": {K.NO_HEADER},
}
MARKER = re.compile(r"<\|(start|end|message|channel|call|return|constrain)\|>")


def whole(row: dict[str, Any], **kw: Any) -> ParseResult:
    return parse_completion_text(row["text"], stop_at_call=False, **kw)


def comparable(result: ParseResult) -> Any:
    return (
        [(m, m.stop) for m in result.messages],
        result.ignored,
        [(r.kind, r.offset) for r in result.repairs],
    )


def outcome(run: Any) -> Any:
    try:
        return comparable(run())
    except HarmonyParseError as exc:
        return ("error", exc.problem, exc.offset)


def streamed(pieces: list[Any], *, tokens: bool) -> ParseResult:
    parser = StreamParser(stop_at_call=False)
    for piece in pieces:
        if tokens:
            parser.feed_tokens([piece])
        else:
            parser.feed_text(piece)
    return parser.finish()


@pytest.mark.parametrize("row", more_rows())
def test_row_reads_as_expected(row: dict[str, Any]) -> None:
    expected = row["expected"]["messages"]
    if not expected:
        # A fragment quoted from a parser's error message: nothing to recover. It must
        # not become content, a final answer or a tool call; failing is one clear error.
        try:
            result = whole(row)
        except HarmonyParseError as exc:
            assert exc.excerpt and exc.excerpt in row["text"]
            return
        for m in result.messages:
            assert m.content == "" and not m.is_final and not m.is_tool_call
        return
    result = whole(row)
    got = [
        {"channel": m.channel, "recipient": m.recipient, "content_type": m.content_type}
        for m in result.messages
    ]
    assert got == [{k: e[k] for k in ("channel", "recipient", "content_type")} for e in expected]
    for m, e in zip(result.messages, expected, strict=True):
        assert m.role is Role.ASSISTANT
        if e["content"] is not None:
            assert m.content == e["content"]
        # No harmony syntax is left in what was recovered.
        assert not MARKER.search(m.content)
        # Reasoning is never promoted: only the final channel is a final answer.
        assert m.is_final == (e["channel"] == "final" and e["recipient"] is None)


@pytest.mark.parametrize("row", more_rows())
def test_stopping_at_the_call_keeps_what_came_before(row: dict[str, Any]) -> None:
    """By default reading stops at `<|call|>` (a server stops there): the same messages
    up to the first call, the rest kept in `ignored`."""
    try:
        full = whole(row)
    except HarmonyParseError:
        pytest.skip("the row raises; test_row_reads_as_expected checks the error")
    stopped = parse_completion_text(row["text"])
    k = next((i for i, m in enumerate(full.messages) if m.stop == "call"), None)
    if k is None:
        assert comparable(stopped) == comparable(full)
        return
    assert stopped.messages == full.messages[: k + 1]
    if k + 1 < len(full.messages):
        assert stopped.ignored


@pytest.mark.parametrize("row", more_rows())
def test_repairs_are_counted(row: dict[str, Any]) -> None:
    try:
        result = whole(row)
    except HarmonyParseError:
        pytest.skip("the row raises; test_row_reads_as_expected checks the error")
    kinds = {r.kind for r in result.repairs}
    damage = [label for label in row["kinds"] if label in DAMAGE]
    for label in damage:
        assert kinds & DAMAGE[label], (label, result.repair_counts)
    if not damage:
        assert result.repairs == [], result.repair_counts  # well-formed: nothing repaired
    assert sum(result.repair_counts.values()) == len(result.repairs)
    for r in result.repairs:
        assert 0 <= r.offset <= len(row["text"])
        assert r.to_dict()["kind"] == r.kind.value


@pytest.mark.parametrize("row", more_rows())
def test_all_input_forms_agree(row: dict[str, Any], enc: Any) -> None:
    text = row["text"]
    tokens = enc.encode(text, allowed_special="all")
    reference = outcome(lambda: whole(row))
    assert outcome(lambda: parse_completion_tokens(tokens, stop_at_call=False)) == reference
    assert outcome(lambda: streamed(list(text), tokens=False)) == reference
    assert outcome(lambda: streamed(tokens, tokens=True)) == reference
    for seed in range(3):
        rng = random.Random(seed)
        cuts, i = [], 0
        while i < len(text):
            n = rng.randint(1, 9)
            cuts.append(text[i : i + n])
            i += n
        assert outcome(lambda c=cuts: streamed(c, tokens=False)) == reference


@pytest.mark.parametrize("row", more_rows())
def test_deltas_rebuild_each_message(row: dict[str, Any], enc: Any) -> None:
    """Streamed token by token, the deltas of a message add up to its content; only a
    recipient taken back from the end of a message (the model wrote a call header into
    its reasoning) was already sent."""
    parser = StreamParser(stop_at_call=False)
    events: list[ParseEvent] = []
    try:
        for t in enc.encode(row["text"], allowed_special="all"):
            events += parser.feed_tokens([t])
        tail, result = parser.finish_events()
    except HarmonyParseError:
        pytest.skip("the row raises; test_row_reads_as_expected checks the error")
    events += tail
    assert [e.message for e in events if isinstance(e, MessageDone)] == result.messages
    taken_back = {r.detail for r in result.repairs if r.kind is K.RECIPIENT_FROM_CONTENT}
    for i, message in enumerate(result.messages):
        sent = "".join(e.delta for e in events if isinstance(e, ContentDelta) and e.index == i)
        if sent != message.content:
            # A header without <|message|> has its leftover words as content, unsent.
            assert not sent or (
                sent.startswith(message.content) and any(t in sent for t in taken_back)
            )
        (header,) = [e for e in events if isinstance(e, HeaderDone) and e.index == i]
        assert (header.channel, header.recipient, header.content_type) == (
            message.channel,
            message.recipient,
            message.content_type,
        )


# -- classes seen in real captures that the dev corpus has no row for -----------------


GLUED = "<|channel|>commentary to=functions.shelljson<|message|>" + '{"cmd": "ls"}<|call|>'


@pytest.mark.parametrize("tools", [("shell",), ("functions.shell", "python")])
def test_recipient_glued_to_its_content_type_is_resolved_against_the_tools(
    tools: tuple[str, ...],
) -> None:
    result = parse_completion_text(GLUED, tools=tools)
    (call,) = result.messages
    assert (call.recipient, call.content_type, call.is_tool_call) == (
        "functions.shell",
        "json",
        True,
    )
    assert result.repair_counts == {"recipient_ctype": 1}
    # Streamed, the header already names the resolved tool.
    parser = StreamParser(tools=tools)
    events = [e for ch in GLUED for e in parser.feed_text(ch)]
    (header,) = [e for e in events if isinstance(e, HeaderDone)]
    assert header.recipient == "functions.shell"
    assert parser.finish() == result


def test_glued_recipient_is_kept_without_tools_or_when_registered_as_written() -> None:
    for tools in (None, ("shelljson",), ("other",)):
        result = parse_completion_text(GLUED, tools=tools)
        assert result.messages[0].recipient == "functions.shelljson"
        assert result.repairs == []


def test_glued_recipient_in_a_stripped_completion() -> None:
    text = 'analysisList files.assistantcommentary to=functions.shelljson{"cmd":"ls"}'
    result = parse_completion_text(text, tools=["shell"])
    assert [(m.channel, m.recipient, m.content_type, m.content) for m in result.messages] == [
        ("analysis", None, None, "List files."),
        ("commentary", "functions.shell", "json", '{"cmd":"ls"}'),
    ]
    assert result.repair_counts == {"stripped_tokens": 1, "recipient_ctype": 1}


@pytest.mark.parametrize("channel", ["??", "commentary?commentary?", "commentary:analysis"])
def test_garbled_channel_is_kept_and_the_messages_after_it_are_not_lost(channel: str) -> None:
    text = (
        f"<|channel|>{channel}<|message|>Let me think.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>42<|return|>"
    )
    result = parse_completion_text(text)
    first, final = result.messages
    assert (first.channel, first.content) == (channel, "Let me think.")
    assert not first.is_final and not first.is_reasoning and not first.is_tool_call
    assert final.is_final and final.content == "42"
    assert result.repair_counts == {"unknown_channel": 1}
    assert result.repairs[0].offset == text.index(channel)


def test_reasoning_alone_is_never_a_final_answer() -> None:
    for text in ("analysisWe should answer 4.", "<|channel|>analysis<|message|>4<|return|>"):
        (m,) = parse_completion_text(text).messages
        assert m.is_reasoning and not m.is_final


@pytest.mark.parametrize(
    "text",
    [
        "finalize the plan first<|return|>",
        "analysis of the data shows growth<|end|>",
        "commentary on the results<|end|>",
    ],
)
def test_ordinary_words_are_not_taken_for_stripped_headers(text: str) -> None:
    (m,) = parse_completion_text(text).messages
    assert m.channel is None and m.content == text.split("<|")[0]
    assert parse_completion_text(text).repair_counts == {"no_header": 1}


def test_header_tokens_on_separate_lines_keep_real_trailing_newlines() -> None:
    """The newline before a marker is layout only where the header is laid out so."""
    laid_out = "<|channel|>final\n<|message|>a\n\n<|return|>"
    plain = "<|channel|>final<|message|>a\n\n<|return|>"
    assert parse_completion_text(laid_out).messages[0].content == "a\n"
    assert parse_completion_text(plain).messages[0].content == "a\n\n"
    assert parse_completion_text(plain).repairs == []


def test_well_formed_completion_needs_no_repair_and_streams_the_same() -> None:
    text = (
        "<|channel|>analysis<|message|>Need data.\n<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json"
        '<|message|>{"a": 1}<|call|>'
    )
    result = parse_completion_text(text)
    assert result.repairs == [] and result.repair_counts == {}
    assert result.messages[0].content == "Need data.\n"
    parser = StreamParser()
    deltas = [e.delta for ch in text for e in parser.feed_text(ch) if isinstance(e, ContentDelta)]
    assert "".join(deltas) == "Need data.\n" + '{"a": 1}'
    assert parser.finish() == result


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<|channel|>final tell me now<|message|>x", "unrecognised text 'tell me now'"),
        ("<|channel|>final<|message|>a<|end|><|weird|>", "unknown special token '<|weird|>'"),
        ("<|start|>user! hi<|message|>x", "unknown author 'user!'"),
    ],
)
def test_what_cannot_be_recovered_is_one_error_with_offset_and_excerpt(
    text: str, problem: str
) -> None:
    with pytest.raises(HarmonyParseError) as info:
        parse_completion_text(text, tools=["f"])
    assert info.value.problem.startswith(problem)
    assert 0 <= info.value.offset < len(text) and info.value.excerpt in text


# -- tool names from a server's own parser ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "tools", "clean"),
    [
        ("create_event<|channel|>analysis", None, "create_event"),
        ("create_event<|channel|>analysis", ["create_event"], "create_event"),
        ("functions.get_weather<|constrain|>json", ["get_weather"], "get_weather"),
        ("shelljson", ["shell"], "shell"),
        ("get_weather", ["get_weather"], "get_weather"),
    ],
)
def test_leaked_header_tokens_are_cut_from_tool_names(
    name: str, tools: list[str] | None, clean: str
) -> None:
    assert clean_tool_name(name, tools) == clean


@pytest.mark.parametrize(
    ("name", "tools"),
    [("assistant<|channel|>analysis", ["exec"]), ("<|channel|>analysis", None), ("nope", ["a"])],
)
def test_a_tool_name_that_names_no_tool_is_one_clear_error(
    name: str, tools: list[str] | None
) -> None:
    with pytest.raises(ToolNameError) as info:
        clean_tool_name(name, tools)
    message = str(info.value)
    assert repr(name) in message and "\n" not in message
    if tools:
        assert f"registered tools: {', '.join(tools)}" in message
