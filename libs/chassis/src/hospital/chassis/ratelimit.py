"""Per-user rate limits: an in-process token bucket per (user, action).

Each serve process keeps its own buckets (``--processes N`` and replicas multiply the allowance by the
number of processes); that is enough to stop a user's script from paging through the patient index,
which is what it is for. Service identities are not limited (their calls are driven by other users'
requests or by devices, limited where those enter).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from hospital.chassis.errors import DomainError


class RateLimited(DomainError):
    status = 429

    def __init__(self, code: str, message: str, retry_after: float) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class TokenBucket:
    """``burst`` requests at once, refilled at ``per_minute`` a minute, per key (0: no limit)."""

    def __init__(self, per_minute: float, burst: int, *, max_keys: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(burst, 1))
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            allowed = 0.0
        else:
            self._buckets[key] = (tokens, now)
            allowed = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def check(self, key: str, code: str, what: str) -> None:
        """Take a token or raise :class:`RateLimited` (HTTP 429 with Retry-After, gRPC RESOURCE_EXHAUSTED)."""
        wait = self.take(key)
        if wait:
            raise RateLimited(code, f"too many {what}: try again in {wait:.0f} s", wait)
