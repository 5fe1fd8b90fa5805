"""Checking every endpoint a run will use before its first sample.

One ``GET {base}/models`` per distinct (URL, API-key variable), all at once: the endpoint is
reachable, accepts the key (not 401/403) and serves the model asked for. Where the list says
nothing about it (no ``/models``, an empty list, or a model name it does not list: an alias,
an Azure deployment, llama-server's any-name), one minimal request settles it: a chat
completion with ``max_tokens: 1`` (an embeddings request for the embeddings endpoint). A
failure raises :class:`EndpointError` naming the roles, URL, model and what went wrong, so a
run never starts against an endpoint that cannot answer it. With several replicas, replicas
that do not answer are reported and left to the replica pool; a run needs one that does.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from robustft.config import Config, endpoint_urls, resolved_endpoint
from robustft.errors import EndpointError
from robustft.llm.http import HTTPEndpoint, HTTPStatusError, describe

LIST_TIMEOUT_S = 4.0  # GET /models: an endpoint that is down fails well within 10 s
PROBE_TIMEOUT_S = 20.0  # the minimal request (a model may be slow to produce one token)


@dataclass(frozen=True)
class Use:
    """What some roles ask of one endpoint: its replicas, model and key variable."""

    roles: tuple[str, ...]
    urls: tuple[str, ...]
    model: str | None
    key_env: str
    kind: str = "chat"  # "chat" | "embeddings"

    def who(self) -> str:
        return f"role{'s' if len(self.roles) > 1 else ''} {', '.join(self.roles)}"


def uses_of(config: Config, roles: tuple[str, ...] | list[str]) -> list[Use]:
    """The endpoints the ``roles`` (and the embeddings endpoint, when configured) use,
    grouped by (URLs, model, key variable); roles without an endpoint are left out."""
    groups: dict[tuple, list[str]] = {}
    for role in roles:
        urls, model, key_env = resolved_endpoint(config, role)
        if urls:
            groups.setdefault((urls, model, key_env, "chat"), []).append(role)
    r = config.retrieval
    if r.embedder == "endpoint" and (urls := endpoint_urls(config, r.base_url)):
        key = (urls, r.model, r.api_key_env or config.endpoint.api_key_env, "embeddings")
        groups.setdefault(key, []).append("embeddings")
    return [Use(tuple(who), *key) for key, who in groups.items()]


@dataclass
class _Listing:
    ids: list[str] | None = None  # served models (None: the endpoint gave no usable list)
    error: Exception | None = None  # the request failed


def _listed(model: str, ids: list[str]) -> bool:
    """``model`` is among the listed ids (also as ``models/NAME`` or ``org/NAME``)."""
    return any(i == model or i.endswith("/" + model) for i in ids)


def _auth(err: Exception | None) -> bool:
    return isinstance(err, HTTPStatusError) and err.status in (401, 403)


class Preflight:
    """One check of a set of :class:`Use`; ``notes`` says what was found beyond failures."""

    def __init__(self, uses: list[Use], list_timeout_s: float = LIST_TIMEOUT_S,
                 probe_timeout_s: float = PROBE_TIMEOUT_S):
        self.uses, self.notes = uses, []
        self.list_timeout_s, self.probe_timeout_s = list_timeout_s, probe_timeout_s
        self._http: dict[tuple[str, str], HTTPEndpoint] = {}

    def _endpoint(self, url: str, key_env: str) -> HTTPEndpoint:
        if (url, key_env) not in self._http:
            self._http[url, key_env] = HTTPEndpoint(url, os.environ.get(key_env) or "no-key",
                                                    self.list_timeout_s)
        return self._http[url, key_env]

    async def _list(self, url: str, key_env: str) -> _Listing:
        try:
            page = await self._endpoint(url, key_env).request("GET", "/models")
        except HTTPStatusError as e:
            return _Listing(error=e) if _auth(e) or e.status >= 500 else _Listing()
        except Exception as e:  # refused, timeout, not JSON
            return _Listing(error=e) if not isinstance(e, ValueError) else _Listing()
        data = page.get("data") if isinstance(page, dict) else None
        ids = [m.get("id") for m in data or [] if isinstance(m, dict) and m.get("id")]
        return _Listing(ids=ids or None)

    async def _probe(self, use: Use, url: str) -> Exception | None:
        """The minimal request; None when it was answered."""
        if use.kind == "embeddings":
            body = {"model": use.model, "input": ["ok"]}
            path = "/embeddings"
        else:
            body = {"model": use.model, "messages": [{"role": "user", "content": "Say OK."}],
                    "max_tokens": 1, "temperature": 0}
            path = "/chat/completions"
        try:
            await self._endpoint(url, use.key_env).request("POST", path, body,
                                                           self.probe_timeout_s)
        except Exception as e:
            return e
        return None

    def _fail(self, use: Use, url: str, what: str) -> EndpointError:
        model = f"model {use.model!r}" if use.model else "no model set"
        return EndpointError(f"endpoint check failed for {use.who()}: {url} ({model}): "
                             f"{what}")

    def _key_problem(self, use: Use, url: str, err: Exception) -> EndpointError:
        unset = "" if os.environ.get(use.key_env) else f" (${use.key_env} is not set)"
        return self._fail(use, url, f"the API key from ${use.key_env} was refused{unset}: "
                          f"{describe(err)}")

    async def _check(self, use: Use, url: str, listing: _Listing) -> EndpointError | None:
        """The problem of one replica for one use, or None when it can serve it."""
        if listing.error is not None:
            if _auth(listing.error):
                return self._key_problem(use, url, listing.error)
            return self._fail(use, url, f"does not answer GET /models: "
                              f"{describe(listing.error)}")
        ids = listing.ids
        if use.model is None:
            if ids is not None and len(ids) == 1:
                return None
            served = f"serves {len(ids)} models {ids[:8]}" if ids else "lists no models"
            return self._fail(use, url, f"{served}: set the model (--model, ROBUSTFT_MODEL, "
                              "endpoint.model or roles.<role>.model)")
        if ids is not None and _listed(use.model, ids):
            return None
        err = await self._probe(use, url)
        if err is None:
            if ids is not None:
                self.notes.append(f"{url} does not list {use.model!r} in GET /models but "
                                  "answered a request for it")
            return None
        if _auth(err):
            return self._key_problem(use, url, err)
        if isinstance(err, HTTPStatusError) and err.status == 429:  # busy, but it is there
            self.notes.append(f"{url} is rate-limiting (HTTP 429): {use.model!r} not confirmed "
                              "before the run; the run's calls wait for the limit")
            return None
        listed = f"; it lists {ids[:8]}" if ids else ""
        if isinstance(err, HTTPStatusError) and err.status < 500:
            return self._fail(use, url, f"a minimal {use.kind} request for the model was "
                              f"refused ({describe(err)}){listed}")
        return self._fail(use, url, f"a minimal {use.kind} request failed: "
                          f"{describe(err)}{listed}")

    async def run(self) -> list[str]:
        """Check every use; returns notes, raises the first :class:`EndpointError`."""
        keys = list(dict.fromkeys((u, use.key_env) for use in self.uses for u in use.urls))
        try:
            listings = dict(zip(keys, await asyncio.gather(*(self._list(*k) for k in keys)),
                                strict=True))
            for use in self.uses:
                problems = await asyncio.gather(*(self._check(use, u, listings[u, use.key_env])
                                                  for u in use.urls))
                bad = [p for p in problems if p is not None]
                if len(bad) == len(use.urls):  # no replica can serve it
                    raise bad[0]
                self.notes += [f"{p} (left out until it answers)" for p in bad]
        finally:
            for endpoint in self._http.values():
                await endpoint.close()
        return self.notes


async def preflight(config: Config, roles: tuple[str, ...] | list[str]) -> list[str]:
    """Check every endpoint the ``roles`` use (see the module doc); returns notes, raises
    :class:`EndpointError`."""
    return await Preflight(uses_of(config, roles)).run()
