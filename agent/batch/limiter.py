"""Back-pressure across the cluster: one semaphore for in-flight model requests.

The model server is a batch's bottleneck, so every worker asks one `InflightLimiter` (a
Ray actor, one per batch) for a lease before each model request and gives it back after:
at most `limit` requests are in flight on the whole cluster, however many workers and
runs there are. A lease names its holder (the worker); a worker that restarts after a
crash first returns every lease its dead predecessor held, and a lease older than
`lease_s` is taken back in any case, so a lost worker cannot shrink the limit for good.

`GatedModel` wraps a model client: each request takes a lease, and a request the server
still answers with 429 (after the client's own retries) is retried with exponential
backoff and jitter, without its lease while it waits.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from harmonygraph.models.base import ModelError, ModelRequest, ModelResponse, StreamEvent

__all__ = ["GatedModel", "InflightLimiter", "is_rate_limited"]


class InflightLimiter:
    """At most `limit` leases out at once (run as an async Ray actor)."""

    def __init__(self, limit: int, lease_s: float = 900.0) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        self.limit = limit
        self.lease_s = lease_s
        self._leases: dict[str, tuple[str, float]] = {}
        self._cond: asyncio.Condition | None = None
        self.granted = 0
        self.peak = 0
        self.waited_s = 0.0
        self.expired = 0

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:  # made on the actor's own event loop
            self._cond = asyncio.Condition()
        return self._cond

    def _expire(self) -> None:
        now = time.monotonic()
        for token, (_, since) in list(self._leases.items()):
            if now - since > self.lease_s:
                del self._leases[token]
                self.expired += 1

    async def acquire(self, holder: str) -> str:
        cond = self._condition()
        start = time.monotonic()
        async with cond:
            while True:
                self._expire()
                if len(self._leases) < self.limit:
                    break
                try:  # wake now and then, so that expired leases are taken back
                    await asyncio.wait_for(cond.wait(), timeout=5.0)
                except TimeoutError:
                    pass
            token = uuid.uuid4().hex
            self._leases[token] = (holder, time.monotonic())
            self.granted += 1
            self.peak = max(self.peak, len(self._leases))
            self.waited_s += time.monotonic() - start
            return token

    async def release(self, token: str) -> None:
        cond = self._condition()
        async with cond:
            if self._leases.pop(token, None) is not None:
                cond.notify()

    async def release_holder(self, holder: str) -> int:
        """Return every lease `holder` holds (a worker restarting after a crash)."""
        cond = self._condition()
        async with cond:
            gone = [t for t, (h, _) in self._leases.items() if h == holder]
            for t in gone:
                del self._leases[t]
            cond.notify(len(gone))
            return len(gone)

    def stats(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "in_flight": len(self._leases),
            "peak": self.peak,
            "granted": self.granted,
            "waited_s": round(self.waited_s, 3),
            "expired": self.expired,
        }


def is_rate_limited(exc: BaseException) -> bool:
    """Whether a model error is the server's 429 (after the client's own retries)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if getattr(cur, "status_code", None) == 429:
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    text = str(exc).lower()
    return "429" in text and "rate limit" in text


class GatedModel:
    """A model whose every request holds a lease of the cluster's `InflightLimiter`.

    `limiter` is the actor's handle (anything whose `acquire.remote(holder)` and
    `release.remote(token)` return awaitables). 429s left after the client's retries are
    retried here `rate_limit_retries` times, from `backoff_s` doubling up to `max_backoff_s`.
    """

    def __init__(
        self,
        inner: Any,
        limiter: Any,
        holder: str,
        *,
        rate_limit_retries: int = 8,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.limiter = limiter
        self.holder = holder
        self.rate_limit_retries = rate_limit_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.rate_limited = 0  # 429s seen here, for the batch's report

    def __getattr__(self, name: str) -> Any:  # the client's own extras (secrets, flags)
        return getattr(self.inner, name)

    async def _acquire(self) -> str:
        token: str = await self.limiter.acquire.remote(self.holder)
        return token

    def _release(self, token: str) -> None:
        self.limiter.release.remote(token)  # no need to wait for it

    async def _backoff(self, attempt: int) -> None:
        delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        await asyncio.sleep(delay * (0.5 + random.random() / 2))

    async def complete(self, request: ModelRequest) -> ModelResponse:
        attempt = 0
        while True:
            token = await self._acquire()
            try:
                response: ModelResponse = await self.inner.complete(request)
                return response
            except ModelError as exc:
                if not is_rate_limited(exc) or attempt >= self.rate_limit_retries:
                    raise
                self.rate_limited += 1
            finally:
                self._release(token)
            await self._backoff(attempt)
            attempt += 1

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        attempt = 0
        while True:
            token = await self._acquire()
            started = False
            try:
                async for event in self.inner.stream(request):
                    started = True
                    yield event
                return
            except ModelError as exc:
                # Only a request refused before anything streamed can be asked again.
                if started or not is_rate_limited(exc) or attempt >= self.rate_limit_retries:
                    raise
                self.rate_limited += 1
            finally:
                self._release(token)
            await self._backoff(attempt)
            attempt += 1

    async def aclose(self) -> None:
        await self.inner.aclose()
