"""The streaming parser: typed events, arbitrary chunk boundaries, token-by-token input."""

from __future__ import annotations

from typing import Any

import pytest
from harmonygraph.harmony import (
    ContentDelta,
    HarmonyParseError,
    HeaderDone,
    Message,
    MessageDone,
    ParseEvent,
    Role,
    StreamParser,
    parse_completion_text,
    parse_completion_tokens,
)

from ._data import corpus_rows

CALL = (
    "<|channel|>analysis<|message|>Need the weather.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city": "Paris"}<|call|>'
)


def events_of(chunks: list[str]) -> tuple[list[ParseEvent], Any]:
    parser = StreamParser()
    events: list[ParseEvent] = []
    for chunk in chunks:
        events.extend(parser.feed_text(chunk))
    tail, result = parser.finish_events()
    return events + tail, result


def test_typed_events_in_order() -> None:
    events, result = events_of([CALL])
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "HeaderDone",
        "ContentDelta",
        "MessageDone",
        "HeaderDone",
        "ContentDelta",
        "MessageDone",
    ]
    h0, d0, m0, h1, d1, m1 = events
    assert h0 == HeaderDone(0, Role.ASSISTANT, "analysis", None, None)
    assert d0 == ContentDelta(0, "analysis", None, "Need the weather.")
    assert isinstance(m0, MessageDone) and m0.message.stop == "end"
    assert h1 == HeaderDone(
        1, Role.ASSISTANT, "commentary", "functions.get_weather", "<|constrain|>json"
    )
    assert isinstance(d1, ContentDelta) and d1.recipient == "functions.get_weather"
    assert isinstance(m1, MessageDone) and m1.index == 1
    assert m1.message == Message.assistant(
        '{"city": "Paris"}',
        channel="commentary",
        recipient="functions.get_weather",
        content_type="<|constrain|>json",
    )
    assert m1.message.stop == "call" and m1.message.is_tool_call
    assert [m0.message, m1.message] == result.messages


def test_header_is_known_before_content_and_content_streams_before_the_end() -> None:
    parser = StreamParser()
    assert parser.feed_text("<|channel|>commentary to=functions.f") == []  # header not done
    (header,) = parser.feed_text("<|message|>")
    assert isinstance(header, HeaderDone) and header.recipient == "functions.f"
    deltas = parser.feed_text('{"a": ')
    assert deltas == [ContentDelta(0, "commentary", "functions.f", '{"a": ')]
    assert parser.feed_text("1}")[0] == ContentDelta(0, "commentary", "functions.f", "1}")
    (done,) = parser.feed_text("<|call|>")
    assert isinstance(done, MessageDone) and done.message.content == '{"a": 1}'


def test_special_token_split_across_chunks() -> None:
    """ollama's streaming case: tags cut in the middle (`<|chan` + `nel|>`)."""
    chunks = [
        "<|chan",
        "nel|>analysis<|mess",
        "age|>Deep ",
        "thought<|end|>",
        "<|start|>assistant<|message|>Done<|end|>",
    ]
    events, result = events_of(chunks)
    assert [(m.channel, m.content, m.stop) for m in result.messages] == [
        ("analysis", "Deep thought", "end"),
        (None, "Done", "end"),
    ]
    # No marker text ever leaks into a delta.
    assert all(
        "<|" not in e.delta and "|>" not in e.delta for e in events if isinstance(e, ContentDelta)
    )


@pytest.mark.parametrize("text", [CALL, "<|channel|>final<|message|>a <| b |> c<|return|>"])
def test_every_two_chunk_split_gives_the_same_messages(text: str) -> None:
    whole = parse_completion_text(text)
    for cut in range(len(text) + 1):
        parser = StreamParser()
        parser.feed_text(text[:cut])
        parser.feed_text(text[cut:])
        assert parser.finish() == whole, cut


def test_lone_marker_like_text_stays_content() -> None:
    """`<|` that never closes, or a long `<|...` run, is ordinary text."""
    msgs = parse_completion_text("<|channel|>final<|message|>x <| y and 1 <|< 2<|end|>").messages
    assert msgs[0].content == "x <| y and 1 <|< 2"
    parser = StreamParser()
    parser.feed_text("<|channel|>final<|message|>ends with <")
    assert parser.finish().messages[0].content == "ends with <"


@pytest.mark.parametrize("ch", ["𝄞", "🐔", "龘", "𒀀"])
def test_character_split_across_tokens_is_decoded_whole(ch: str, enc: Any) -> None:
    text = f"<|channel|>final<|message|>{ch} and {ch}<|return|>"
    tokens = enc.encode(text, allowed_special="all")
    assert len(enc.encode(ch)) > 1  # the point of the test: one character, several tokens
    parser = StreamParser()
    deltas = []
    for t in tokens:
        deltas += [e.delta for e in parser.feed_tokens([t]) if isinstance(e, ContentDelta)]
    result = parser.finish()
    assert result.messages[0].content == f"{ch} and {ch}"
    assert "\ufffd" not in "".join(deltas)  # never half a character in a delta


def test_deltas_rebuild_every_corpus_message(enc: Any) -> None:
    """Streamed token by token, the deltas of each message add up to its content."""
    rows = [p.values[0] for p in corpus_rows() if p.values[0] is not None]
    if not rows:
        pytest.skip("no corpus")
    checked = 0
    for row in rows:
        parser = StreamParser()
        events: list[ParseEvent] = []
        try:
            for t in enc.encode(row["text"], allowed_special="all"):
                events += parser.feed_tokens([t])
            tail, result = parser.finish_events()
        except HarmonyParseError:
            continue
        events += tail
        done = [e.message for e in events if isinstance(e, MessageDone)]
        assert done == result.messages
        for i, message in enumerate(result.messages):
            streamed = "".join(
                e.delta for e in events if isinstance(e, ContentDelta) and e.index == i
            )
            # A header cut by the end of a completion has its leftover words as content.
            assert streamed == message.content or not streamed
            header = [e for e in events if isinstance(e, HeaderDone) and e.index == i]
            assert len(header) == 1
            assert (header[0].channel, header[0].recipient, header[0].content_type) == (
                message.channel,
                message.recipient,
                message.content_type,
            )
        checked += 1
    assert checked >= 55


def test_finish_is_idempotent_and_reports_truncation() -> None:
    parser = StreamParser()
    parser.feed_text("<|channel|>final<|message|>I'm in the middle of")
    first = parser.finish()
    assert first.truncated and first.messages[0].stop is None
    assert parser.finish() == first


def test_finish_events_closes_a_cut_message() -> None:
    parser = StreamParser()
    parser.feed_text("<|channel|>analysis<|message|>thinking")
    events, result = parser.finish_events()
    assert events == [MessageDone(0, result.messages[0])]
    assert result.messages[0].content == "thinking"


def test_text_after_call_is_ignored_unless_asked() -> None:
    text = CALL + "<|start|>assistant<|channel|>final<|message|>made up<|return|>"
    stopped = parse_completion_text(text)
    assert len(stopped.messages) == 2
    assert stopped.ignored == ["<|start|>assistant<|channel|>final<|message|>made up<|return|>"]
    going = parse_completion_text(text, stop_at_call=False)
    assert [m.channel for m in going.messages] == ["analysis", "commentary", "final"]
    assert going.messages[-1].stop == "return"


def test_feed_after_call_still_returns_events_list() -> None:
    parser = StreamParser()
    parser.feed_text(CALL)
    assert parser.feed_text("<|start|>assistant<|message|>more") == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<|channel|><|message|>x<|end|>", "expected a channel name after <|channel|>"),
        ("<|channel|>final<|constrain|><|message|>{}", "expected a type after <|constrain|>"),
        (
            "<|channel|>final<|message|>a<|message|>b",
            "unexpected <|message|> inside message content",
        ),
        (
            "<|channel|>final<|message|>a<|end|><|message|>b",
            "unexpected <|message|> between messages",
        ),
        ("<|start|>assistant<|channel|>final tell me<|message|>x", "unrecognised text 'tell me'"),
        ("<|start|>user! hi<|message|>x", "unknown author 'user!'"),
        ("<|start|>assistant<|foo|><|message|>x", "unknown special token '<|foo|>'"),
    ],
)
def test_what_cannot_be_understood_raises_one_clear_error(text: str, problem: str) -> None:
    for feed in ("whole", "chars"):
        with pytest.raises(HarmonyParseError) as info:
            if feed == "whole":
                parse_completion_text(text)
            else:
                parser = StreamParser()
                for ch in text:
                    parser.feed_text(ch)
                parser.finish()
        exc = info.value
        assert exc.problem.startswith(problem)
        assert 0 <= exc.offset < len(text)
        assert exc.excerpt in text and len(exc.excerpt) <= 50
        assert str(exc) == f"{exc.problem} at offset {exc.offset} (near {exc.excerpt!r})"


def test_offset_points_at_the_problem() -> None:
    text = (
        "<|channel|>analysis<|message|>fine<|end|>"
        "<|start|>assistant<|channel|>final bogus words<|message|>x"
    )
    with pytest.raises(HarmonyParseError) as info:
        parse_completion_text(text)
    assert info.value.offset == text.index("bogus")
    assert info.value.excerpt == "ssistant<|channel|>final bogus words<|message|>x"


@pytest.mark.parametrize(
    "tokens", [[99_999_999], [200006, 99_999_999], [-1], [200005, 35644, 2**40]]
)
def test_invalid_token_ids_raise_harmony_parse_error(tokens: list[int]) -> None:
    """Not the Rust side's HarmonyError / OverflowError: one HarmonyParseError."""
    with pytest.raises(HarmonyParseError) as info:
        parse_completion_tokens(tokens)
    assert "expected a token id of the harmony vocabulary" in str(info.value)
    assert str(tokens[-1]) in str(info.value)


def test_reserved_special_token_in_content_is_kept_as_text(enc: Any) -> None:
    tokens = [*enc.encode("<|channel|>final<|message|>a", allowed_special="all"), 200014]
    tokens += enc.encode("b<|return|>", allowed_special="all")
    assert parse_completion_tokens(tokens).messages[0].content == "a<|reserved_200014|>b"


def test_marker_text_written_in_content_stays_text_when_parsing_token_ids(enc: Any) -> None:
    """From token ids only special token ids are markers: an answer may write "<|end|>"."""
    head = enc.encode("<|channel|>final<|message|>", allowed_special="all")
    body = enc.encode("Write <|end|> then <|call|>.", disallowed_special=())
    tokens = [*head, *body, *enc.encode("<|return|>", allowed_special="all")]
    whole = parse_completion_tokens(tokens).messages
    parser = StreamParser()
    for t in tokens:
        parser.feed_tokens([t])
    streamed = parser.finish().messages
    assert [(m.channel, m.content, m.stop) for m in whole] == [
        ("final", "Write <|end|> then <|call|>.", "return")
    ]
    assert streamed == whole


MIXED = (
    "<|channel|>analysis<|message|>Sums 𝄞 and 🐔, then 龘𒀀.\n\n<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Done: 日本語 é\n<|return|>"
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_token_chunking_keeps_messages_and_deltas(size: int, enc: Any) -> None:
    """However the token ids are chunked, the messages and what the deltas add up to
    are the same, and no delta carries half a character."""
    tokens = enc.encode(MIXED, allowed_special="all")
    parser = StreamParser()
    events: list[ParseEvent] = []
    for i in range(0, len(tokens), size):
        events += parser.feed_tokens(tokens[i : i + size])
    tail, result = parser.finish_events()
    events += tail
    assert result == parse_completion_tokens(tokens)
    assert [m.content for m in result.messages] == [
        "Sums 𝄞 and 🐔, then 龘𒀀.\n\n",
        "Done: 日本語 é\n",
    ]
    for i, message in enumerate(result.messages):
        deltas = [e.delta for e in events if isinstance(e, ContentDelta) and e.index == i]
        assert "".join(deltas) == message.content
        assert all(d and "\ufffd" not in d for d in deltas)


def test_token_deltas_are_ordinary_content_deltas(enc: Any) -> None:
    """The deltas of the token-by-token path compare, hash and stay frozen as any."""
    parser = StreamParser()
    parser.feed_tokens(enc.encode("<|channel|>final<|message|>", allowed_special="all"))
    (delta,) = parser.feed_tokens(enc.encode("Hi"))
    assert delta == ContentDelta(0, "final", None, "Hi")
    assert hash(delta) == hash(ContentDelta(0, "final", None, "Hi"))
    assert repr(delta) == repr(ContentDelta(0, "final", None, "Hi"))
    with pytest.raises(AttributeError):
        delta.delta = "changed"  # type: ignore[misc]


def test_text_and_tokens_mixed_inside_content(enc: Any) -> None:
    """Text held back by the lexer (a "<" that may begin a marker) is still in front of
    the tokens fed after it, and a character split between calls is decoded whole."""
    parser = StreamParser()
    parser.feed_tokens(enc.encode("<|channel|>final<|message|>", allowed_special="all"))
    assert [e.delta for e in parser.feed_text("a <") if isinstance(e, ContentDelta)] == ["a "]
    (delta,) = parser.feed_tokens(enc.encode("b"))
    assert isinstance(delta, ContentDelta) and delta.delta == "<b"
    split = enc.encode("🐔")
    assert len(split) > 1
    assert parser.feed_tokens(split[:1]) == []  # half a character: nothing to send yet
    (delta,) = parser.feed_tokens([*split[1:], *enc.encode(" ok")])
    assert isinstance(delta, ContentDelta) and delta.delta == "🐔 ok"
    parser.feed_tokens(enc.encode("<|return|>", allowed_special="all"))
    assert parser.finish().messages[0].content == "a <b🐔 ok"
