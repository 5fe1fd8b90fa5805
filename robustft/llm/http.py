"""The HTTP layer of the client: one aiohttp session per OpenAI-compatible base URL, and how
a failed request is classified (retry? replica down? what to tell the user)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from robustft.llm.ratelimit import RateLimiter

RETRY_STATUS = {408, 409, 429}


class HTTPStatusError(Exception):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, status: int, body: str, headers):
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status, self.headers = status, headers


class RequestTimeout(Exception):
    """No complete reply within the timeout."""


class HTTPEndpoint:
    """One OpenAI-compatible base URL: an aiohttp session (created on first use, on the
    running loop) with the API key from the environment in its headers."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float,
                 limiter: RateLimiter | None = None):
        self.base_url, self.timeout_s, self.limiter = base_url, timeout_s, limiter
        self.auth = {"Authorization": f"Bearer {api_key}"}
        self.headers = {**self.auth, "Content-Type": "application/json"}
        self._session: aiohttp.ClientSession | None = None

    async def request(self, method: str, path: str, body: dict | None = None,
                      timeout_s: float | None = None) -> Any:
        """The reply's JSON; raises :class:`HTTPStatusError`, :class:`RequestTimeout`,
        ``aiohttp.ClientError`` (connection refused, dropped, truncated) or a JSON error."""
        data = json.dumps(body) if body is not None else None
        return json.loads(await self.fetch(method, path, data, timeout_s))

    async def upload(self, path: str, name: str, content: bytes, purpose: str) -> Any:
        """POST a file as multipart form data (``/files``); the reply's JSON."""
        form = aiohttp.FormData()
        form.add_field("purpose", purpose)
        form.add_field("file", content, filename=name, content_type="application/jsonl")
        return json.loads(await self.fetch("POST", path, form))

    async def fetch(self, method: str, path: str, data: Any = None,
                    timeout_s: float | None = None) -> bytes:
        """The reply's body as bytes (``data``: a JSON string or a form)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        headers = self.headers if isinstance(data, str | None) else self.auth
        try:
            async with self._session.request(method, self.base_url + path, data=data,
                                             headers=headers, timeout=timeout) as resp:
                raw = await resp.read()
                if self.limiter is not None:
                    self.limiter.observe(resp.headers)
                if resp.status >= 400:
                    raise HTTPStatusError(resp.status, raw.decode(errors="replace"),
                                          resp.headers)
        except TimeoutError as err:
            raise RequestTimeout(f"no reply within {timeout.total:g} s") from err
        return raw

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def retry_after(err: Exception) -> float | None:
    value = err.headers.get("retry-after") if isinstance(err, HTTPStatusError) else None
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


class EmptyReply(Exception):
    """A 200 reply without what the request asked for (no choices, no vectors)."""


def retryable(err: Exception) -> bool:
    if isinstance(err, (RequestTimeout, aiohttp.ClientError)):
        return True
    if isinstance(err, HTTPStatusError):
        return err.status in RETRY_STATUS or err.status >= 500
    return isinstance(err, (EmptyReply, json.JSONDecodeError))


def replica_down(err: Exception) -> bool:
    """The replica itself stopped answering (not a problem with this request)."""
    if isinstance(err, (RequestTimeout, aiohttp.ClientError)):
        return True
    return isinstance(err, HTTPStatusError) and err.status in (502, 503, 504)


def endpoint_failure(err: Exception) -> bool:
    """The endpoint failed, not the request's content: refused, dropped or truncated
    connections, timeouts, any 5xx. While every call fails like this the endpoint is down
    (an outage to wait out), not the row's fault."""
    if isinstance(err, (RequestTimeout, aiohttp.ClientError)):
        return True
    return isinstance(err, HTTPStatusError) and err.status >= 500


def describe(err: Exception) -> str:
    if isinstance(err, HTTPStatusError):
        return str(err)
    if isinstance(err, aiohttp.ClientError):
        return f"connection error ({type(err).__name__}): {str(err)[:300]}"
    if isinstance(err, RequestTimeout):
        return f"timeout: {err}"
    return f"{type(err).__name__}: {str(err)[:300]}"
