"""Every real completion in the shared corpus is a test case for the parser.

Each row is parsed four ways (whole text, token ids, char by char, token by token) and
all four must agree. Well-formed rows must give the headers listed in `EXPECTED`;
malformed ones parse into something sensible or raise `HarmonyParseError`, never
another exception. Where openai-harmony itself parses a row cleanly, we agree with it.
"""

from __future__ import annotations

import random
import re
from typing import Any

import openai_harmony as oh
import pytest
from harmonygraph.harmony import (
    HarmonyParseError,
    Message,
    ParseResult,
    Role,
    StreamParser,
    parse_completion,
    parse_completion_text,
    parse_completion_tokens,
)

from ._data import corpus_rows

ERROR = "error"
C_JSON = "<|constrain|>json"
A, FN = "assistant", "functions"
GW = "functions.get_weather"
SF = "functions.special_function"
# Per row: (author, channel, recipient, content_type, stop) of each message, or ERROR.
# The author is the role, or the tool's name for a tool message.
EXPECTED: dict[int, Any] = {
    0: [(A, "analysis", None, None, "return"), (A, "analysis", "lookup_weather", "code", None)],
    1: [(A, "analysis", None, None, "return"), (A, "final", None, None, None)],
    2: [("browser.search", "commentary", "assistant", None, None)],
    3: [(A, "commentary", GW, C_JSON, "call")],
    4: [(A, "commentary", GW, C_JSON, "call")],
    5: [(A, "commentary", GW, C_JSON, "call")],
    6: [
        (A, None, None, None, "end"),
        (A, "analysis", None, None, "end"),
        (A, "final", None, None, "return"),
    ],
    7: [
        (A, "analysis", None, None, "end"),
        (A, "analysis", None, None, "end"),
        (A, "final", None, None, "return"),
    ],
    8: [(A, None, None, None, "end"), (A, "commentary", GW, "json", "call")],
    9: [(A, "commentary", None, None, "end")],
    10: [(A, "commentary", GW, C_JSON, "end")],
    11: [(A, "analysis", None, None, "end"), (A, "final", None, None, "return")],
    12: [(A, "analysis", None, None, "end"), (A, "commentary", GW, C_JSON, "call")],
    13: [(GW, "commentary", "assistant", None, "end")],
    14: [
        (A, "analysis", None, None, "end"),
        (A, "commentary", None, None, "end"),
        (A, "commentary", "functions.generate_file", C_JSON, "call"),
    ],
    15: [(A, "analysis", None, None, "end"), (A, "analysis", GW, C_JSON, "call")],
    16: [(A, "analysis", None, None, "end"), (A, "final", None, None, "return")],
    17: ERROR,  # a garbled header ("commentary t\no= interracial code"), cut short
    18: [(A, "analysis", None, None, "end"), (A, "commentary", GW, C_JSON, "call")],
    19: [(A, "commentary", GW, C_JSON, "call")],  # the tool's answer after <|call|> is ignored
    20: [(A, "analysis", GW, None, None)],
    21: [(A, "analysis", GW, None, None)],
    22: [(A, "analysis", GW, None, None)],
    23: [(A, "analysis", GW, "abc", None)],
    24: [(A, "commentary", GW, C_JSON, None)],
    25: [(A, "commentary", GW, C_JSON, None)],
    26: [(A, "commentary", GW, C_JSON, None)],
    27: [(A, "commentary", GW, C_JSON, None)],
    28: [(A, "analysis", None, None, "end"), (A, None, None, None, "end")],
    29: [(A, "commentary", GW, None, "end"), (A, None, None, None, "end")],
    30: [(A, "commentary", "functions.calculate", None, None)],
    31: [(A, "analysis", None, None, "end"), (A, None, None, None, "end")],
    32: [
        (A, "analysis", None, None, "end"),
        (A, "commentary", None, None, "end"),
        (A, "final", None, None, "return"),
    ],
    33: [(A, "final", None, None, None)],
    34: [(A, "analysis", None, None, None)],
    35: [(A, "analysis", None, None, "end"), (A, "final", None, None, None)],
    36: [(A, "commentary", None, None, "end"), (A, "final", None, None, "end")],
    37: [(A, "commentary", None, None, "end"), (A, "commentary", GW, None, "end")],
    38: [(A, "analysis", None, None, "end"), (A, "analysis", GW, C_JSON, "call")],
    39: [(A, "analysis", None, None, "end"), (A, "commentary", "functions.tool_a", C_JSON, "call")],
    40: [(A, "analysis", None, None, "end"), (A, "commentary", "math.sum", C_JSON, None)],
    41: [(A, "final", None, C_JSON, "end")],
    42: [
        (A, "analysis", None, None, "end"),
        (A, "commentary", "functions.get_user_location", "json", None),
    ],
    43: [("user", None, None, None, "end"), (A, "final", None, None, None)],
    # The content type as the model wrote it (`<|constrain|> JSON ` -> `<|constrain|>JSON`).
    44: [(A, "analysis", None, None, "end"), (A, "final", None, "<|constrain|>JSON", None)],
    45: [(A, "analysis", None, None, "end"), (A, "final", None, "<|constrain|>ReplyAction", None)],
    46: [(A, "analysis", "browser.search", None, "call")],
    47: [(GW, None, "assistant", None, "end")],
    48: ERROR,  # "Some text " before the first header
    49: [(A, "unknown", None, None, "end")],  # kept as written: neither reasoning nor final
    50: ERROR,  # "<|weird|>": not a harmony token
    51: [(A, "analysis", None, None, "end"), (A, "analysis", None, None, "end")],
    52: [(A, "analysis", None, None, "end")],
    53: [
        (A, "analysis", None, None, "end"),
        (A, "commentary", "functions.read_file", C_JSON, "call"),
    ],
    54: [(A, "analysis", None, None, None)],
    55: [(A, "analysis", None, None, "end"), (A, "commentary", SF, C_JSON, None)],
    56: [(A, "analysis", None, None, "end"), (A, "commentary", SF, None, None)],
    57: [(A, "analysis", None, None, "end"), (A, "analysis", SF, C_JSON, None)],
    58: [
        (A, "analysis", None, None, "end"),
        (A, "commentary", None, None, "end"),
        (A, "commentary", SF, C_JSON, None),
    ],
    59: [(A, "commentary", SF, C_JSON, None)],
    60: [(A, "analysis", SF, C_JSON, None)],
    61: [(A, "analysis", None, None, "end"), (A, "analysis", SF, C_JSON, None)],
    62: [
        (A, "analysis", None, None, "end"),
        (A, "commentary", "python", "<|constrain|>code", None),
    ],
    63: [(A, "analysis", None, None, "end"), (A, "final", None, None, None)],
}


def outcome(run: Any) -> Any:
    """What a parse gives, comparable across input forms: messages or (problem, offset)."""
    try:
        result = run()
    except HarmonyParseError as exc:
        assert 0 <= exc.offset, exc
        assert len(str(exc).splitlines()) == 1
        return ("error", exc.problem, exc.offset)
    assert isinstance(result, ParseResult)
    repairs = [(r.kind, r.offset) for r in result.repairs]
    return [(m, m.stop) for m in result.messages], result.ignored, repairs


def headers(result: ParseResult) -> list[tuple[Any, ...]]:
    return [
        (
            m.name if m.role is Role.TOOL else m.role.value,
            m.channel,
            m.recipient,
            m.content_type,
            m.stop,
        )
        for m in result.messages
    ]


def by_chars(text: str) -> ParseResult:
    parser = StreamParser()
    for ch in text:
        parser.feed_text(ch)
    return parser.finish()


def by_tokens(tokens: list[int]) -> ParseResult:
    parser = StreamParser()
    for token in tokens:
        parser.feed_tokens([token])
    return parser.finish()


def by_random_chunks(text: str, seed: int) -> ParseResult:
    rng = random.Random(seed)
    parser = StreamParser()
    i = 0
    while i < len(text):
        n = rng.randint(1, 9)
        parser.feed_text(text[i : i + n])
        i += n
    return parser.finish()


def test_expectations_cover_the_whole_corpus() -> None:
    rows = [p.values[0] for p in corpus_rows() if p.values[0] is not None]
    if not rows:
        pytest.skip("no corpus")
    assert sorted(EXPECTED) == [r["index"] for r in rows]


@pytest.mark.parametrize("row", corpus_rows())
def test_all_input_forms_agree(row: dict[str, Any], enc: Any) -> None:
    text = row["text"]
    tokens = enc.encode(text, allowed_special="all")
    whole = outcome(lambda: parse_completion_text(text))
    assert outcome(lambda: parse_completion_tokens(tokens)) == whole
    assert outcome(lambda: parse_completion(tokens)) == whole
    assert outcome(lambda: by_chars(text)) == whole
    assert outcome(lambda: by_tokens(tokens)) == whole
    for seed in range(3):
        assert outcome(lambda s=seed: by_random_chunks(text, s)) == whole


@pytest.mark.parametrize("row", corpus_rows())
def test_row_parses_as_expected(row: dict[str, Any]) -> None:
    expected = EXPECTED[row["index"]]
    if expected == ERROR:
        assert "malformed" in row["kinds"]
        with pytest.raises(HarmonyParseError) as info:
            parse_completion_text(row["text"])
        exc = info.value
        # Where and what: an offset inside the completion, an excerpt taken from there.
        assert 0 <= exc.offset <= len(row["text"])
        assert exc.excerpt and exc.excerpt in row["text"]
        assert f"at offset {exc.offset}" in str(exc)
        return
    result = parse_completion_text(row["text"])
    assert headers(result) == expected
    # The result says whether the completion was cut short.
    assert result.truncated == (result.messages[-1].stop is None)
    for m in result.messages:
        # No harmony syntax leaks into content or headers (the constrain marker is the
        # content type's own spelling).
        assert not re.search(r"<\|(start|end|message|channel|call|return)\|>", m.content)
        for field in (m.channel, m.recipient):
            assert field is None or ("<|" not in field and " " not in field)


def parsed_rows() -> list[Any]:
    return [
        p for p in corpus_rows() if p.values[0] is None or EXPECTED[p.values[0]["index"]] != ERROR
    ]


@pytest.mark.parametrize("row", parsed_rows())
def test_kinds_hold(row: dict[str, Any]) -> None:
    """The corpus' own labels, checked against what the parser says."""
    kinds = set(row["kinds"])
    msgs = parse_completion_text(row["text"]).messages
    calls = [m for m in msgs if m.is_tool_call]
    if kinds & {"tool_call", "browser.search", "python", "multiple-calls"}:
        assert calls, "a tool call was expected"
        call = calls[-1]
        name = re.findall(r"to=([\w.]+)", row["text"])
        assert call.recipient in name
    if "analysis-channel-call" in kinds:
        assert any(m.channel == "analysis" for m in calls)
    if kinds & {"constrain-space", "constrain-nospace", "constrain-as-text"}:
        assert calls[-1].content_type == "<|constrain|>json"
    if "bare-json-ctype" in kinds:
        assert any(m.content_type == "json" for m in msgs)
    if "constrain-code" in kinds:
        assert calls[-1].content_type == "<|constrain|>code"
    if "end-instead-of-call" in kinds:
        assert calls[0].stop == "end"
    if kinds & {"truncated", "no-stop-token"} and "text-after-call" not in kinds:
        assert msgs[-1].stop is None or "multiple-calls" in kinds
    if "reasoning+final" in kinds:
        assert [m.channel for m in msgs] == ["analysis", "final"]
        assert msgs[0].is_reasoning and msgs[1].is_final
    if "tool_response" in kinds and "tool_call" not in kinds:
        assert msgs[0].role is Role.TOOL and msgs[0].recipient == "assistant"
        assert msgs[0].name in ("functions.get_weather", "browser.search")
    if "preamble" in kinds:
        assert any(m.is_preamble for m in msgs)
    if "missing-channel" in kinds:
        assert any(m.channel is None for m in msgs)
    if "empty-content" in kinds:
        assert msgs[0].content == ""


def test_contents_of_selected_rows() -> None:
    """Contents too, where a row's note says what they must be."""
    rows = {p.values[0]["index"]: p.values[0] for p in corpus_rows() if p.values[0] is not None}
    if not rows:
        pytest.skip("no corpus")

    def msgs(i: int) -> list[Message]:
        return parse_completion_text(rows[i]["text"]).messages

    assert [m.content for m in msgs(16)] == [
        'User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.',
        "2 + 2 = 4. 🐔",
    ]
    assert msgs(5)[0].content == '{"latitude":48.8566,"longitude":2.3522}'
    assert msgs(6)[0].content == "I must refuse"  # the refusal with no header at all
    assert msgs(7)[0].content == "I must refuse"  # header without <|message|>
    assert msgs(9)[0].content == "Hello"
    assert msgs(32)[-1].content == '{"answer": "hi"}'
    assert msgs(53)[-1].content == '{\n  "files": []\n}'
    assert msgs(2)[0].content == '{"result": "https://openai.com/"} '
    assert msgs(62)[-1].content == 'print("hello")'
    # Text after <|call|> is not a message, but it is kept for whoever wants it.
    result = parse_completion_text(rows[53]["text"])
    assert result.ignored == [
        "<|start|>assistant<|channel|>final<|message|>This text should be truncated."
    ]
    # With stop_at_call=False the tool's answer after the call is read as well.
    both = parse_completion_text(rows[19]["text"], stop_at_call=False).messages
    assert [(m.role, m.name, m.recipient) for m in both] == [
        (Role.ASSISTANT, None, "functions.get_weather"),
        (Role.TOOL, "functions.get_weather", "assistant"),
    ]
    assert both[1].content == '{"sunny": true, "temperature": 20}'


def _theirs(tokens: list[int], enc: Any) -> list[tuple[Any, ...]] | None:
    """openai-harmony's parse of a completion, or None where it fails."""
    for role in (oh.Role.ASSISTANT, None):
        try:
            parser = oh.StreamableParser(enc, role)
            for t in tokens:
                parser.process(t)
            parser.process_eos()
        except Exception:
            continue
        out = []
        for m in parser.messages:
            content = "".join(getattr(c, "text", "") for c in m.content)
            role_value = getattr(m.author.role, "value", m.author.role)
            out.append((role_value, m.author.name, m.channel, m.recipient, m.content_type, content))
        return out
    return None


def test_agrees_with_openai_harmony_where_it_parses_cleanly(enc: Any) -> None:
    """openai-harmony is strict; on every row it parses into clean headers, we match it."""
    rows = [p.values[0] for p in corpus_rows() if p.values[0] is not None]
    if not rows:
        pytest.skip("no corpus")
    compared = []
    for row in rows:
        theirs = _theirs(enc.encode(row["text"], allowed_special="all"), enc)
        if theirs is None or not all(
            (ch is None or ch in ("analysis", "commentary", "final"))
            and "<|" not in (rcpt or "") + (ct or "").replace("<|constrain|>", "")
            for _, _, ch, rcpt, ct, _ in theirs
        ):
            continue  # it fails on the row, or reads special tokens into a header
        ours = [
            (m.role.value, m.name, m.channel, m.recipient, m.content_type, m.content)
            for m in parse_completion_text(row["text"], stop_at_call=False).messages
        ]
        assert ours == theirs, f"row {row['index']}"
        compared.append(row["index"])
        # What openai-harmony reads strictly needs no repair (at most a second channel
        # section, which it too lets the last one win).
        repairs = parse_completion_text(row["text"], stop_at_call=False).repair_counts
        assert set(repairs) <= {"double_channel"}, (row["index"], repairs)
    assert len(compared) >= 35, compared
