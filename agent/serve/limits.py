"""Per-key limits: requests at once and requests a minute, each refused with 429 and
`Retry-After`. Counted in this process (each replica enforces its own share)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from harmonygraph.serve.errors import RateLimitError

__all__ = ["KeyLimiter", "Slot"]


@dataclass
class _Bucket:
    tokens: float
    updated: float
    running: int = 0


class Slot:
    """One admitted request; `release()` (idempotent) when it ends."""

    def __init__(self, bucket: _Bucket) -> None:
        self._bucket: _Bucket | None = bucket

    def release(self) -> None:
        if self._bucket is not None:
            self._bucket.running -= 1
            self._bucket = None


class KeyLimiter:
    """A token bucket (`per_minute`) and a count of runs in flight (`max_concurrent`) per key."""

    def __init__(self, *, max_concurrent: int = 16, per_minute: int = 600) -> None:
        self.max_concurrent = max_concurrent
        self.per_minute = per_minute
        self._buckets: dict[str, _Bucket] = {}

    def running(self, key_id: str) -> int:
        b = self._buckets.get(key_id)
        return b.running if b else 0

    def acquire(
        self, key_id: str, *, max_concurrent: int | None = None, per_minute: int | None = None
    ) -> Slot:
        """A slot for one request of the key, or `RateLimitError` (429, Retry-After)."""
        conc = max_concurrent or self.max_concurrent
        rate = per_minute or self.per_minute
        now = time.monotonic()
        b = self._buckets.get(key_id)
        if b is None:
            b = self._buckets[key_id] = _Bucket(tokens=float(rate), updated=now)
        b.tokens = min(float(rate), b.tokens + (now - b.updated) * rate / 60.0)
        b.updated = now
        if b.running >= conc:
            raise RateLimitError(
                f"This key has {b.running} requests in progress, its limit of {conc}; retry "
                "when one ends.",
                retry_after=1,
                code="concurrency_limit_exceeded",
            )
        if b.tokens < 1.0:
            raise RateLimitError(
                f"Rate limit reached for this key: {rate} requests per minute.",
                retry_after=(1.0 - b.tokens) * 60.0 / rate,
            )
        b.tokens -= 1.0
        b.running += 1
        return Slot(b)
