"""Grammar-constrained final answers over `/v1/completions`, in two requests.

A server applies a structured-output grammar to a whole completion, so asking for it
outright would constrain gpt-oss's reasoning too (the best-known gpt-oss pain with
structured outputs: the analysis channel forced into JSON, or the grammar ignored).
Because we render harmony ourselves, we can split the turn where the answer begins:

1. phase one samples freely and stops once the model has opened the final channel
   (`<|channel|>final<|message|>`, or with `<|constrain|>json` before `<|message|>`,
   sent as stop strings); a tool call or any other
   stop ends the turn there, with no second request;
2. phase two continues the same token prefix (prompt + phase one's tokens) under the
   server's JSON-Schema option, so the body parses and then ends with `<|return|>`.

vLLM names the option two ways: `structured_outputs: {"json": schema}` (vLLM >= 0.10.2;
the `guided_*` fields were deprecated then and removed in 0.12) and `guided_json: schema`
(older vLLM, and servers copying its API). `StructuredOutputStyle` picks one.

A server that ignores stop strings still works: phase one is cut just after the first
final-channel opening and whatever the model wrote after it is discarded.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, AnyStr, Literal, cast

import httpx
import openai
import pydantic
from harmonygraph.harmony import STOP_TOKENS
from harmonygraph.harmony.encoding import CALL, MESSAGE, RETURN, get_encoding
from harmonygraph.harmony.render import json_ids
from harmonygraph.models._openai import usage_from
from harmonygraph.models.base import ModelError, ModelSettings, Usage
from harmonygraph.models.errors import client_secrets, redact_secrets, safe_url
from openai.types import Completion

__all__ = [
    "FINAL_OPEN",
    "FINAL_OPENINGS",
    "StructuredOutputStyle",
    "TwoPhaseCompletion",
    "complete_with_final_schema",
    "create_token_completion",
    "cut_at_final_open",
    "structured_output_body",
]

FINAL_OPEN = "<|channel|>final<|message|>"
# gpt-oss may also open the answer with a content type, as it does for a response format.
FINAL_OPENINGS = (
    FINAL_OPEN,
    "<|channel|>final <|constrain|>json<|message|>",
    "<|channel|>final<|constrain|>json<|message|>",
)
_FINAL_OPENING = re.compile(r"<\|channel\|>final ?(?:<\|constrain\|>\s*json\s*)?<\|message\|>")
StructuredOutputStyle = Literal["structured_outputs", "guided_json"]
_MARKERS = ("<|return|>", "<|call|>")


def structured_output_body(
    schema: Mapping[str, Any], style: StructuredOutputStyle = "structured_outputs"
) -> dict[str, Any]:
    """The `extra_body` fields that ask vLLM for JSON that fits `schema`."""
    if style == "structured_outputs":
        return {"structured_outputs": {"json": dict(schema)}}
    if style == "guided_json":
        return {"guided_json": dict(schema)}
    raise ValueError(f"style must be 'structured_outputs' or 'guided_json', not {style!r}")


@dataclass(frozen=True)
class TwoPhaseCompletion:
    """The turn as one completion: phase one's text and tokens, then phase two's."""

    text: str  # both phases, with special tokens written out, ready for the parser
    token_ids: tuple[int, ...]  # the completion's tokens (phase one re-encoded if needed)
    prefix_ids: tuple[int, ...]  # what phase two continued: prompt + phase one's tokens
    finish_reason: str | None
    usage: Usage  # both requests summed (phase two's prompt is mostly a cache hit)
    constrained: bool  # phase two ran: the final body was generated under the schema
    latency_s: float


def cut_at_final_open(text: str, token_ids: Sequence[int] | None) -> tuple[str, list[int]] | None:
    """Phase one up to and including the first final-channel opening, or None if none.

    Works from the token ids when the server returned them (exact), else re-encodes the
    text, which is what the model would have produced in all but rare tokenisations.
    """
    enc = get_encoding()
    if token_ids:
        ids = list(token_ids)
        for k, token in enumerate(ids):
            if token == MESSAGE:  # a completion has few: decoding each head is cheap
                head_text = enc.decode(ids[: k + 1])
                if _ends_with_final_opening(head_text):
                    return head_text, ids[: k + 1]
        return None
    found = _FINAL_OPENING.search(text)
    if found is None:
        return None
    head_text = text[: found.end()]
    return head_text, list(enc.encode(head_text, allowed_special="all"))


def _ends_with_final_opening(text: str) -> bool:
    return any(m.end() == len(text) for m in _FINAL_OPENING.finditer(text, max(0, len(text) - 64)))


def _choice(completion: Any, client: openai.AsyncOpenAI) -> Any:
    if not completion.choices:
        raise ModelError(
            f"{str(client.base_url).rstrip('/')} answered with no choices; "
            "is it an OpenAI-compatible server?"
        )
    return completion.choices[0]


def _with_marker(text: str, finish_reason: str | None, stop_reason: Any) -> str:
    """Put back the stop marker a server left out of the text (as `completions` does)."""
    if finish_reason != "stop" or text.endswith(_MARKERS):
        return text
    if stop_reason == CALL:
        return text + "<|call|>"
    if stop_reason in (None, RETURN):
        return text + "<|return|>"
    return text


async def complete_with_final_schema(
    client: openai.AsyncOpenAI,
    model: str,
    prompt: Sequence[int],
    schema: Mapping[str, Any],
    *,
    settings: ModelSettings | None = None,
    style: StructuredOutputStyle = "structured_outputs",
    return_token_ids: bool = True,
    prompt_json: bytes | None = None,
) -> TwoPhaseCompletion:
    """One assistant turn whose final answer is generated under `schema` (vLLM).

    `settings` gives max_tokens (shared by both phases), temperature, top_p, seed,
    timeout and extra_body. `prompt_json` is `prompt` as a JSON array when the caller
    has it already (`RenderedPrompt.tokens_json()`). Errors are the SDK's; callers
    translate them as usual.
    """
    settings = settings or ModelSettings()
    enc = get_encoding()
    base_extra: dict[str, Any] = {
        "stop_token_ids": list(STOP_TOKENS),
        "skip_special_tokens": False,
        "include_stop_str_in_output": True,
    }
    if return_token_ids:
        base_extra["return_token_ids"] = True
    base_extra.update(settings.extra_body)

    def create(prompt: bytes, max_tokens: int, extra: Mapping[str, Any]) -> Any:
        fields: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
        }
        if settings.seed is not None:
            fields["seed"] = settings.seed
        fields.update(extra)  # extra_body (in it) overrides any field, as the SDK merges it
        return create_token_completion(client, fields, prompt, request_timeout=settings.timeout)

    started = time.perf_counter()
    prompt_ids = list(prompt)
    if prompt_json is None:
        prompt_json = b"[" + json_ids(prompt_ids) + b"]"
    first = await create(
        prompt_json, settings.max_tokens, {"stop": list(FINAL_OPENINGS), **base_extra}
    )
    choice = _choice(first, client)
    extra = choice.model_extra or {}
    text = choice.text or ""
    ids: list[int] | None = list(extra["token_ids"]) if extra.get("token_ids") else None
    usage = usage_from(first.usage)
    cut = cut_at_final_open(text, ids)
    if cut is None:
        # No final answer opened: a tool call, or the token budget ran out.
        text = _with_marker(text, choice.finish_reason, extra.get("stop_reason"))
        if ids is None:
            ids = list(enc.encode(text, allowed_special="all"))
        return TwoPhaseCompletion(
            text,
            tuple(ids),
            tuple(prompt_ids),
            choice.finish_reason,
            usage,
            False,
            time.perf_counter() - started,
        )
    head_text, head_ids = cut
    prefix = prompt_ids + head_ids
    remaining = settings.max_tokens - len(head_ids)
    if remaining <= 0:
        return TwoPhaseCompletion(
            head_text,
            tuple(head_ids),
            tuple(prefix),
            "length",
            usage,
            False,
            time.perf_counter() - started,
        )
    second_extra = {**base_extra, **structured_output_body(schema, style)}
    head_json = json_ids(head_ids)
    prefix_json = prompt_json[:-1] + (b"," + head_json + b"]" if head_json else b"]")
    second = await create(prefix_json, remaining, second_extra)
    choice2 = _choice(second, client)
    extra2 = choice2.model_extra or {}
    body_text = _with_marker(choice2.text or "", choice2.finish_reason, extra2.get("stop_reason"))
    body_ids = (
        list(extra2["token_ids"])
        if extra2.get("token_ids")
        else list(enc.encode(body_text, allowed_special="all"))
    )
    return TwoPhaseCompletion(
        head_text + body_text,
        tuple(head_ids + body_ids),
        tuple(prefix),
        choice2.finish_reason,
        usage + usage_from(second.usage),
        True,
        time.perf_counter() - started,
    )


# `client.post` takes ready bytes as `content` in current SDKs, as `body` before that.
_POST_TAKES_CONTENT = "content" in inspect.signature(openai.AsyncOpenAI.post).parameters
_PROMPT_IDS_KEY = b'"prompt_token_ids"'
_PROMPT_IDS_KEY_TEXT = _PROMPT_IDS_KEY.decode()


async def create_token_completion(
    client: openai.AsyncOpenAI,
    fields: Mapping[str, Any],
    prompt_json: bytes,
    *,
    request_timeout: float | None,
    stream: bool = False,
) -> Any:
    """`POST /completions` with the token-id prompt already JSON-encoded (`[1,2,3]`).

    The body is `fields` plus `"prompt": [ids]`, the same wire body as
    `client.completions.create(prompt=ids, ...)`, but the history is not encoded again
    each step: the SDK's request transform visits every id (1.4 s of client CPU at 100k
    tokens) and even `json.dumps` of 100k ids is 11 ms, against a copy of the bytes the
    renderer keeps. Auth, retries and HTTP errors are the SDK's, through its documented
    `client.post`; a stream is the SDK's `AsyncStream[Completion]`.

    A whole completion is read from the raw body: with `return_token_ids` vLLM sends the
    prompt's ids back (`prompt_token_ids`), and decoding them would cost what encoding
    them did (9 ms at 100k). That one field, which nothing here reads, is dropped from
    the bytes before the JSON is decoded; the rest becomes a `Completion`, validated, or
    where a server's answer does not validate, built as the SDK builds one
    (`Completion.construct`, recursive and unvalidated).
    """
    head = json.dumps(fields, separators=(",", ":")).encode()
    content = b"".join((head[:-1], b',"prompt":', prompt_json, b"}"))  # one copy of the ids
    options: dict[str, Any] = {"headers": {"Content-Type": "application/json"}}
    if request_timeout is not None:
        options["timeout"] = request_timeout
    raw: dict[str, Any] = {"content" if _POST_TAKES_CONTENT else "body": content}
    if stream:
        return await client.post(
            "/completions",
            cast_to=Completion,
            options=cast(Any, options),
            stream=True,
            stream_cls=_CompletionStream,
            **raw,
        )
    response = await client.post(
        # httpx's Response: the SDK hands it back unparsed (SDKs on httpx2 accept it too).
        "/completions",
        cast_to=cast(Any, httpx.Response),
        options=cast(Any, options),
        **raw,
    )
    try:
        data = json.loads(_without_prompt_ids(response.content))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        # Not through the SDK's errors: no credential of the client's in the message.
        url = safe_url(str(client.base_url).rstrip("/"))
        message = (
            f"{url} answered /completions with a body that is not a JSON object "
            f"({response.content[:200]!r}); is it an OpenAI-compatible server?"
        )
        raise ModelError(redact_secrets(message, client_secrets(client)))
    try:  # pydantic-core's validation is 9 us here, the SDK's lenient build 165 us
        return Completion.model_validate(data)
    except pydantic.ValidationError:
        return Completion.construct(**data)  # what the SDK returns for odd servers


class _CompletionStream(openai.AsyncStream[Completion]):
    """The SDK's completion stream, but vLLM's echo of the prompt ids (in the first
    chunk, with `return_token_ids`) is cut from an event's data before it is decoded."""

    async def _iter_events(self) -> AsyncIterator[Any]:
        async for sse in super()._iter_events():
            if _PROMPT_IDS_KEY_TEXT in sse.data:
                sse = type(sse)(
                    event=sse.event, data=_without_prompt_ids(sse.data), id=sse.id, retry=sse.retry
                )
            yield sse


def _without_prompt_ids(body: AnyStr) -> AnyStr:
    """`body` with a `"prompt_token_ids": [ids]` member's list replaced by `null`.

    Found by byte search (C speed), and only replaced when the brackets hold a flat
    list (no string, object or list inside); anything else leaves the body as it was. Inside a JSON
    string the key's quotes would be escaped, so the search cannot match text.
    """
    text = isinstance(body, str)
    key = body.find(_PROMPT_IDS_KEY_TEXT if text else _PROMPT_IDS_KEY)  # type: ignore[arg-type]
    if key < 0:
        return body
    marks = ('"', "{", "[", "]", ":", ":null") if text else (b'"', b"{", b"[", b"]", b":", b":null")
    quote, brace, bracket, end, colon, null = cast(tuple[AnyStr, ...], marks)
    after = key + len(_PROMPT_IDS_KEY)
    opening = body.find(bracket, after)
    closing = body.find(end, opening)
    if opening < 0 or closing < 0 or body[after:opening].strip() != colon:
        return body
    if any(body.find(c, opening + 1, closing) >= 0 for c in (quote, brace, bracket)):
        return body  # not a flat list of numbers
    return body[:after] + null + body[closing + 1 :]
