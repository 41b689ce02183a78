"""What both OpenAI-compatible clients share: the SDK client, settings, retries, errors."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import openai
from harmonygraph.concurrency import iterate_sync, run_sync
from harmonygraph.models.base import (
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamEvent,
    Usage,
    effective_settings,
)
from harmonygraph.models.errors import (
    RetryPolicy,
    call_with_retries,
    client_secrets,
    safe_url,
    translate_error,
)
from harmonygraph.settings import Settings

__all__ = [
    "OpenAICompatibleModel",
    "usage_from",
]

T = TypeVar("T")



def concurrent_http_client(base_url: str | None = None) -> Any:
    """The SDK's aiohttp transport where aiohttp is installed, else None (its httpx one).

    httpx's connection pool checks every pooled connection's socket for each request it
    places, so its cost grows with the connections open: at 500 runs at once the client
    spent 20.9 s of CPU against 11.1 s on aiohttp, the transport the SDK offers "for
    improved concurrency performance". aiohttp comes with the `serve` and `batch`
    extras; without it the SDK's default client is used.

    A `base_url` with credentials in it (`http://user:password@host/v1`, HTTP Basic) gets
    httpx too: aiohttp refuses a URL's credentials beside the SDK's `Authorization` header.
    """
    if importlib.util.find_spec("aiohttp") is None:
        return None
    if base_url is not None and "@" in urlsplit(base_url).netloc:
        return None
    return openai.DefaultAioHttpClient()


def usage_from(usage: Any) -> Usage:
    """Our `Usage` from an OpenAI `usage` object (or None, when the server sent none)."""
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_tokens=int(cached or 0),
    )


class OpenAICompatibleModel:
    """Base of `HarmonyCompletionsModel` and `ChatCompletionsModel`.

    `settings` are this model's defaults: a request whose `settings` are left at
    `ModelSettings()` uses them; a request that brings its own settings wins.
    """

    endpoint: ClassVar[str] = ""

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        settings: ModelSettings | None = None,
        client: openai.AsyncOpenAI | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        env = Settings()
        self.name = model or env.model
        self.settings = settings or ModelSettings()
        self.retry_policy = retry_policy or RetryPolicy()
        self.retries = 0  # retries made over this model's life, for traces and tests
        if client is None:
            url = base_url or env.base_url
            client = openai.AsyncOpenAI(
                base_url=url,
                api_key=api_key or env.api_key,
                # Retries are ours (see agent.models.errors); timeouts are per request.
                max_retries=0,
                timeout=self.settings.timeout,
                http_client=concurrent_http_client(url),
            )
        self.client = client

    @property
    def base_url(self) -> str:
        """The server's URL, for messages: without user-info (`user:password@`)."""
        return safe_url(str(self.client.base_url).rstrip("/"))

    @property
    def secrets(self) -> list[str]:
        """What this client was configured with that must never be written down: the API
        key, the URL's credentials, custom header and query values, whatever their shape.
        The agent's trace redactor and this client's error messages remove them."""
        return client_secrets(self.client)

    def settings_for(self, request: ModelRequest) -> ModelSettings:
        return effective_settings(self.settings, request.settings)

    async def call(self, settings: ModelSettings, make: Callable[[], Awaitable[T]]) -> T:
        """`make()` under the retry policy, with SDK errors turned into ours."""
        attempts = 1

        def count(_attempt: int, _exc: BaseException) -> None:
            nonlocal attempts
            attempts += 1
            self.retries += 1

        try:
            return await call_with_retries(
                make, max_retries=settings.max_retries, policy=self.retry_policy, on_retry=count
            )
        except openai.OpenAIError as exc:
            error = await translate_error(
                exc,
                client=self.client,
                model=self.name,
                endpoint=self.endpoint,
                timeout_s=settings.timeout,
                attempts=attempts,
            )
            # The SDK's own error is kept as the cause unless its text holds a secret.
            raise error from (None if self._leaks(exc) else exc)

    def _leaks(self, exc: BaseException) -> bool:
        text = f"{exc} {exc.__cause__ or ''} {exc.__context__ or ''}"
        return any(s in text for s in self.secrets)

    async def translate(self, exc: openai.OpenAIError, settings: ModelSettings) -> Exception:
        """For errors raised while reading a stream, after the request was accepted."""
        return await translate_error(
            exc,
            client=self.client,
            model=self.name,
            endpoint=self.endpoint,
            timeout_s=settings.timeout,
            attempts=1,
        )

    # -- the protocol; subclasses implement complete and stream ------------------
    async def complete(self, request: ModelRequest) -> ModelResponse:
        raise NotImplementedError

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> OpenAICompatibleModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sync wrappers -------------------------------------------------------------
    # Each sync call runs on an event loop of its own, and httpx's async connection pool
    # must not outlive its loop, so a sync call borrows a fresh HTTP client and closes it.
    def _fresh_client(self) -> openai.AsyncOpenAI:
        return self.client.copy(http_client=openai.DefaultAsyncHttpxClient())

    async def _complete_fresh(self, request: ModelRequest) -> ModelResponse:
        original, self.client = self.client, self._fresh_client()
        try:
            return await self.complete(request)
        finally:
            fresh, self.client = self.client, original
            await fresh.close()

    async def _stream_fresh(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        original, self.client = self.client, self._fresh_client()
        try:
            async for event in self.stream(request):
                yield event
        finally:
            fresh, self.client = self.client, original
            await fresh.close()

    def complete_sync(self, request: ModelRequest) -> ModelResponse:
        """`complete` from sync code (not from inside a running event loop)."""
        result: ModelResponse = run_sync(self._complete_fresh(request))
        return result

    def stream_sync(self, request: ModelRequest) -> Iterator[StreamEvent]:
        """`stream` from sync code, on a private event loop."""
        return iterate_sync(self._stream_fresh(request))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.name!r}, base_url={self.base_url!r})"
