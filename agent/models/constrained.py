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

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import openai
from harmonygraph.harmony import STOP_TOKENS
from harmonygraph.harmony.encoding import CALL, MESSAGE, RETURN, get_encoding
from harmonygraph.models._openai import usage_from
from harmonygraph.models.base import ModelError, ModelSettings, Usage

__all__ = [
    "FINAL_OPEN",
    "FINAL_OPENINGS",
    "StructuredOutputStyle",
    "TwoPhaseCompletion",
    "complete_with_final_schema",
    "cut_at_final_open",
    "structured_output_body",
    "token_prompt",
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
) -> TwoPhaseCompletion:
    """One assistant turn whose final answer is generated under `schema` (vLLM).

    `settings` gives max_tokens (shared by both phases), temperature, top_p, seed,
    timeout and extra_body. Errors are the SDK's; callers translate them as usual.
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

    def body(prompt_ids: list[int], max_tokens: int, extra: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "timeout": settings.timeout,
            **token_prompt(prompt_ids, extra),
        }
        if settings.seed is not None:
            kwargs["seed"] = settings.seed
        return kwargs

    started = time.perf_counter()
    prompt_ids = list(prompt)
    first = await client.completions.create(
        stop=list(FINAL_OPENINGS), **body(prompt_ids, settings.max_tokens, base_extra)
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
    second = await client.completions.create(**body(prefix, remaining, second_extra))
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


def token_prompt(prompt_ids: Sequence[int], extra_body: dict[str, Any]) -> dict[str, Any]:
    """`prompt` and `extra_body` arguments for `client.completions.create` with token ids.

    The ids travel in `extra_body`, which the SDK merges into the JSON as it is: given as
    `prompt`, the SDK's request transform visits every id (1.4 s of client CPU at 100k
    tokens, against 10 ms this way). The wire body is the same: `"prompt": [ids]`.
    """
    return {"prompt": "", "extra_body": {**extra_body, "prompt": list(prompt_ids)}}
