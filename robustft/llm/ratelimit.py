"""Client-side rate limits of one endpoint + API key, shared by every role that uses them.

- ``requests_per_minute``: requests are spaced evenly (a bucket holding one request, refilled
  at rpm/60 per second): never more than the limit in any window, so a provider's sliding
  window does not answer 429.
- ``tokens_per_minute``: a bucket of one second's tokens, refilled at tpm/60 per second; a
  request takes its estimate (prompt estimate + max_tokens) once the bucket is not in debt,
  and the difference to the reply's real usage is settled afterwards.
- The endpoint's own signals pause every request to it: ``Retry-After`` on a 429, and
  ``x-ratelimit-remaining-requests`` / ``-tokens`` at 0 until ``x-ratelimit-reset-*``.

Waiters are served in arrival order (one computes its wait at a time).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` value ("1s", "6m0s", "20ms", "0.5"); None if
    unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parts = _DURATION.findall(value)
        return sum(float(n) * _UNIT[u] for n, u in parts) if parts else None


class RateLimiter:
    def __init__(self, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None):
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self.requests = 1.0
        self.tokens = (tokens_per_minute or 0) / 60
        self.paused_until = 0.0
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def tighten(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        """Another role names limits for the same endpoint + key: the stricter ones hold."""
        def stricter(a, b):
            return min(x for x in (a, b) if x) if a or b else None
        self.rpm = stricter(self.rpm, requests_per_minute)
        self.tpm = stricter(self.tpm, tokens_per_minute)

    def _refill(self, now: float) -> None:
        elapsed, self._stamp = now - self._stamp, now
        if self.rpm:
            self.requests = min(1.0, self.requests + elapsed * self.rpm / 60)
        if self.tpm:
            self.tokens = min(self.tpm / 60, self.tokens + elapsed * self.tpm / 60)

    def _wait(self, now: float) -> float:
        wait = self.paused_until - now
        if self.rpm and self.requests < 1:
            wait = max(wait, (1 - self.requests) * 60 / self.rpm)
        if self.tpm and self.tokens < 0:
            wait = max(wait, -self.tokens * 60 / self.tpm)
        return wait

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one request of about ``tokens`` tokens may be sent, then take it."""
        async with self._lock:
            while True:
                now = time.monotonic()
                self._refill(now)
                wait = self._wait(now)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self.rpm:
                self.requests -= 1
            if self.tpm:
                self.tokens -= tokens

    def settle(self, estimated: int, actual: int) -> None:
        """The reply's real token usage replaces the estimate taken at :meth:`acquire`."""
        if self.tpm:
            self.tokens = min(self.tpm / 60, self.tokens + estimated - actual)

    def pause(self, seconds: float) -> None:
        """No request to this endpoint for ``seconds`` (a 429's Retry-After)."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Pause when the endpoint says a limit is used up until its reset."""
        for kind in ("requests", "tokens"):
            if headers.get(f"x-ratelimit-remaining-{kind}") == "0":
                reset = parse_reset(headers.get(f"x-ratelimit-reset-{kind}"))
                if reset:
                    self.pause(min(reset, 60.0))
