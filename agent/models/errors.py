"""Turning `openai` SDK failures into our errors, and the retry policy both clients share.

Every error says what failed and what to do about it: a wrong URL names the URL and the
`--base-url` / `HARMONYGRAPH_BASE_URL` settings, an unknown model lists the models the
server does serve (from `/v1/models`), an auth failure names `HARMONYGRAPH_API_KEY`.

Retries are ours, not the SDK's (`max_retries=0` on the client), for two reasons:

- a refused connection means nothing listens at that address (a wrong URL or port, a
  server not started). The SDK retries it with backoff like any connection error, so a
  typo in the URL took seconds to report; we fail at once with the URL in the message;
- both clients, streaming and not, share one policy that tests can observe.

Otherwise the policy is the SDK's: retry 408, 409, 429 and 5xx answers, timeouts and
dropped connections, with exponential backoff and jitter, honouring `Retry-After`
(`retry-after-ms` first, as the SDK does). tenacity would add a dependency on the hot
path for what is a twenty-line loop.

No message names a credential: URLs are shown without their user-info (`safe_url`) and
every message is scrubbed of the client's configured secrets (`client_secrets`: the API
key, the URL's password, custom header and query values), whatever their shape.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import openai
from harmonygraph.models.base import (
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
)
from harmonygraph.settings import DEFAULT_API_KEY  # sent when none is configured: no secret

__all__ = [
    "RETRYABLE_STATUS",
    "RetryPolicy",
    "call_with_retries",
    "client_secrets",
    "is_connection_refused",
    "is_retryable",
    "redact_secrets",
    "safe_url",
    "translate_error",
    "url_secrets",
]

T = TypeVar("T")

BASE_URL_HINT = "set the server's URL with --base-url or HARMONYGRAPH_BASE_URL"
# 408 timeout, 409 lock conflict, 429 rate limit: the SDK's own list of statuses worth retrying.
RETRYABLE_STATUS = frozenset({408, 409, 429})


# -- a client's own secrets ----------------------------------------------------------------

MASK = "[REDACTED]"


def safe_url(url: str) -> str:
    """`url` with its user-info (`user:password@`, a credential) replaced by the mask."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK if "@" in url else url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))


def url_secrets(url: str) -> list[str]:
    """The credentials in `url`'s user-info, as written and percent-decoded, and as the
    HTTP Basic header carries them. A bare user name is a secret only when there is no
    password (a token sent as the user name); next to a password it is an account name."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return []
    userinfo, at, _ = netloc.rpartition("@")
    if not at or not userinfo:
        return []
    user, colon, password = userinfo.partition(":")
    found = [userinfo, unquote(userinfo)]
    if colon and password:
        found += [password, unquote(password)]
    elif user:
        found += [user, unquote(user)]
    basic = f"{unquote(user)}:{unquote(password)}".encode()
    found.append(base64.b64encode(basic).decode("ascii"))
    return found


def client_secrets(client: Any) -> list[str]:
    """Every secret an OpenAI SDK client was configured with, whatever its shape: the API
    key, the base URL's credentials, and the values of custom headers and query params."""
    found: list[str] = []
    key = getattr(client, "api_key", None)
    if isinstance(key, str) and key and key != DEFAULT_API_KEY:
        found.append(key)
    base = getattr(client, "base_url", None)
    if base is not None:
        found += url_secrets(str(base))
    for attr in ("_custom_headers", "_custom_query"):
        values = getattr(client, attr, None)
        if isinstance(values, Mapping):
            for value in values.values():
                if isinstance(value, str) and value:
                    found.append(value)
                    # "Basic abc", "Token abc": the credential without its scheme too.
                    _scheme, space, rest = value.partition(" ")
                    if space and rest.strip():
                        found.append(rest.strip())
    return _longest_first(found)


def _longest_first(values: Iterable[str]) -> list[str]:
    # Longest first: a secret that contains another is replaced whole.
    return sorted({v for v in values if v}, key=len, reverse=True)


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every one of `secrets` replaced by the mask, longest first."""
    for secret in _longest_first(secrets):
        text = text.replace(secret, MASK)
    return text


class RetryPolicy:
    """Exponential backoff with jitter: `base * 2**attempt`, at most `cap` seconds."""

    def __init__(self, base_delay: float = 0.5, cap: float = 8.0) -> None:
        self.base_delay = base_delay
        self.cap = cap

    def delay(self, attempt: int, exc: BaseException) -> float:
        hinted = _retry_after(exc)
        if hinted is not None:
            return hinted
        delay = min(self.cap, self.base_delay * (2**attempt))
        return delay * (1 - 0.25 * random.random())


def _retry_after(exc: BaseException) -> float | None:
    """The server's own `Retry-After` hint, when it gave a sane one (under a minute)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date; rare from model servers, so the backoff decides
        if 0 <= seconds <= 60:
            return seconds
    return None


def is_connection_refused(exc: BaseException) -> bool:
    """Whether the connection was refused: nothing listens there, so retrying cannot help."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ConnectionRefusedError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def is_timeout(exc: BaseException) -> bool:
    """Whether `exc` is a timeout, not a connection that failed some other way: the SDK's
    aiohttp transport reports every connection error (refused, DNS, server hung up) as a
    connect timeout, with aiohttp's own error, which says what happened, as its cause."""
    if not isinstance(exc, openai.APITimeoutError):
        return False
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, TimeoutError):  # asyncio's and aiohttp's timeouts included
            return True
        if isinstance(cur, OSError) or type(cur).__module__.startswith("aiohttp."):
            return False  # ConnectionRefusedError, socket.gaierror, aiohttp's errors
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return True


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return not is_connection_refused(exc)
    return False


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    max_retries: int,
    policy: RetryPolicy,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Run `call`, retrying what `is_retryable` allows; the last error is raised as is."""
    attempt = 0
    while True:
        try:
            return await call()
        except openai.OpenAIError as exc:
            if attempt >= max_retries or not is_retryable(exc):
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            await asyncio.sleep(policy.delay(attempt, exc))
            attempt += 1


def _server_message(exc: openai.APIStatusError) -> str:
    """The error text the server sent, from whichever JSON shape it used."""
    body: Any = exc.body
    if isinstance(body, dict):
        # vLLM >= 0.10: {"error": {"message": ...}}; older vLLM: {"message": ...} at the top;
        # vLLM's API-key check: {"error": "Unauthorized"}; FastAPI routes: {"detail": ...}.
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail")
            if msg:
                return str(msg)
        elif err:
            return str(err)
        if body.get("detail"):
            return str(body["detail"])
    return str(exc.message or f"HTTP {exc.status_code}")


def _is_unknown_model(exc: openai.NotFoundError) -> bool:
    """A 404 about the model (vLLM: "The model `x` does not exist."), not about the path."""
    text = _server_message(exc).lower()
    body = exc.body
    kind = ""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            kind = str(err.get("type") or err.get("code") or "").lower()
    return "model" in text or kind == "model_not_found"


async def served_models(client: openai.AsyncOpenAI, wait_s: float = 5.0) -> list[str] | None:
    """The model ids the server lists, or None when it cannot say."""
    try:
        page = await client.models.list(timeout=wait_s)
    except openai.OpenAIError:
        return None
    return [m.id for m in page.data]


async def translate_error(
    exc: openai.OpenAIError,
    *,
    client: openai.AsyncOpenAI,
    model: str,
    endpoint: str,
    timeout_s: float,
    attempts: int,
) -> ModelError:
    """The `ModelError` to raise for `exc`, with a message that says what to do (and no
    secret of the client's in it)."""
    error = await _translate(
        exc,
        client=client,
        model=model,
        endpoint=endpoint,
        timeout_s=timeout_s,
        attempts=attempts,
    )
    message = redact_secrets(str(error), client_secrets(client))
    return error if message == str(error) else type(error)(message)


async def _translate(
    exc: openai.OpenAIError,
    *,
    client: openai.AsyncOpenAI,
    model: str,
    endpoint: str,
    timeout_s: float,
    attempts: int,
) -> ModelError:
    base_url = safe_url(str(client.base_url).rstrip("/"))
    tried = f" (after {attempts} attempts)" if attempts > 1 else ""
    # A connection that failed (refused, DNS, hung up) is reported as such even where a
    # transport calls it a connect timeout (the SDK's aiohttp transport: see is_timeout).
    if is_timeout(exc):
        return ModelTimeoutError(
            f"{base_url}/{endpoint} did not answer within {timeout_s:g} s{tried} for model "
            f"{model!r}; raise the timeout (ModelSettings.timeout) if the server is busy or "
            "the answer is long, or check that the server is healthy"
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        why = "connection refused" if is_connection_refused(exc) else str(cause or exc)
        return ModelConnectionError(
            f"could not connect to {base_url} ({why}){tried}; is the server running at that "
            f"address? {BASE_URL_HINT} (default http://localhost:8000/v1)"
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ModelAuthError(
            f"{base_url} refused the API key (HTTP {exc.status_code}: {_server_message(exc)}); "
            "set the key the server expects with --api-key or HARMONYGRAPH_API_KEY"
        )
    if isinstance(exc, openai.NotFoundError):
        if _is_unknown_model(exc):
            names = await served_models(client)
            served = (
                f"it serves: {', '.join(names)}"
                if names
                else "it did not list its models (GET /models)"
            )
            return ModelNotFoundError(
                f"{base_url} does not serve model {model!r} ({_server_message(exc)}); {served}. "
                "Choose one with --model or HARMONYGRAPH_MODEL"
            )
        return ModelConnectionError(
            f"{base_url}/{endpoint} does not exist (HTTP 404: {_server_message(exc)}); "
            f"the base URL must be the API root, usually ending in /v1; {BASE_URL_HINT}"
        )
    if isinstance(exc, openai.RateLimitError):
        return ModelError(
            f"{base_url} kept answering 429 (rate limited){tried}: {_server_message(exc)}; "
            "wait, lower the concurrency, or raise ModelSettings.max_retries"
        )
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            return ModelError(
                f"{base_url}/{endpoint} failed with HTTP {exc.status_code}{tried}: "
                f"{_server_message(exc)}; check the server's log"
            )
        return ModelError(
            f"{base_url}/{endpoint} rejected the request (HTTP {exc.status_code}): "
            f"{_server_message(exc)}"
        )
    return ModelError(f"calling {base_url}/{endpoint} failed: {exc}")
