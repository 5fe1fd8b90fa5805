"""Async OpenAI-compatible calls (chat completions, embeddings, model lists) over one aiohttp
session per endpoint; retries in this layer.

The OpenAI wire format is plain JSON, so requests are posted and replies read as dicts: an SDK's
typed request and response models cost more CPU per call than the rest of the pipeline
(``eval/bench_overhead.py``). LangGraph nodes get no RetryPolicy: this module is the single
retry layer. It retries only 408/409/429/5xx, timeouts,
connection errors (refused, dropped, truncated bodies), garbage (non-JSON) replies and replies
without choices, with exponential backoff (a Retry-After header wins).

A target may list several replicas of one model (:mod:`robustft.endpoints`): each attempt
goes to the least busy healthy replica, and a replica that stops answering is left out (and
probed) while the request fails over to another one at once.

Outages: when a call fails at the endpoint level (refused or dropped connection, timeout,
5xx) and no call to the endpoint has succeeded since the call's previous failure, the
endpoint is down: the call waits with backoff (not counted against ``max_retries``) until the
endpoint answers again, and once it has been down for ``outage_timeout`` seconds the call
raises :class:`EndpointOutage` (the run stops resumably). A call that keeps failing while
other calls succeed is the request's own problem: it fails after ``max_retries``.

Every successful completion goes into the per-request cache (when one is given) before it is
returned; a cached request is answered from disk and costs nothing. A :class:`Budget` stops
new calls once a call or token limit is reached. In batch mode (:mod:`robustft.llm.batch`) a
cache miss waits for its round's batch instead, and goes online only when the batch did not
answer it. A multiple-choice call may carry a JSON schema (structured outputs); an endpoint
that refuses it is remembered and asked in free text.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robustft.config import EndpointConfig, base_urls
from robustft.llm.batch import BatchQueue
from robustft.llm.budget import Budget
from robustft.llm.cache import RequestCache, request_key
from robustft.llm.endpoints import Replica, ReplicaPool
from robustft.llm.http import (
    EmptyReply,
    HTTPEndpoint,
    HTTPStatusError,
    describe,
    endpoint_failure,
    replica_down,
    retry_after,
    retryable,
)
from robustft.llm.ratelimit import RateLimiter
from robustft.llm.tokens import estimate_messages, estimate_tokens
from robustft.methods.parsing import split_thinking
from robustft.methods.scoring import answer_suffix
from robustft.schemas import Completion, TokenLogprob

log = logging.getLogger("robustft")
# what an endpoint's 400 says when it refuses structured outputs (not some other bad request)
_REFUSAL = re.compile(r"response_format|json_schema|structured|schema|grammar", re.IGNORECASE)
MAX_RATE_LIMIT_WAITS = 20  # 429s with Retry-After per request before they count as failures


class CallError(RuntimeError):
    """A call failed for good (non-retryable, or retries exhausted)."""

    def __init__(self, reason: str, attempts: int):
        super().__init__(reason)
        self.reason, self.attempts = reason, attempts


@dataclass(frozen=True)
class Target:
    base_urls: tuple[str, ...]  # replicas serving the same model (a string: one URL)
    model: str | None
    api_key_env: str
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_urls", base_urls(self.base_urls))


def _has_choice(data: Any) -> bool:
    choices = data.get("choices") if isinstance(data, dict) else None
    return bool(choices) and isinstance(choices[0].get("message"), dict)


def _logprobs(choice: dict[str, Any]) -> list[TokenLogprob] | None:
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    return [TokenLogprob.model_construct(
        token=c["token"], logprob=c["logprob"],
        top=[(t["token"], t["logprob"]) for t in (c.get("top_logprobs") or [])])
        for c in content]


class LLMClient:
    """Holds one async client per (base_url, key variable) and one replica pool per target
    for the whole run."""

    def __init__(self, endpoint: EndpointConfig, cache: RequestCache | None = None,
                 budget: Budget | None = None, outage_timeout: float = 600.0,
                 notify: Callable[[str], None] | None = None):
        """``outage_timeout``: seconds an endpoint may be down before its calls raise
        :class:`EndpointOutage`; ``notify``: where outage notes go (default: the log)."""
        self.cfg, self.cache, self.budget = endpoint, cache, budget or Budget()
        self.outage_timeout = outage_timeout
        self.notify = notify or (lambda text: log.warning("%s", text))
        self.batch: BatchQueue | None = None  # batch mode: requests go out as batches
        self._clients: dict[tuple[str, str], HTTPEndpoint] = {}
        self._limiters: dict[tuple[tuple[str, ...], str], RateLimiter] = {}
        self._pools: dict[tuple[tuple[str, ...], str], ReplicaPool] = {}
        self._models: dict[tuple[tuple[str, ...], str], str] = {}
        self._unstructured: set[tuple[str, ...]] = set()  # endpoints refusing JSON schemas
        self._structured_seen: dict[tuple[str, ...], asyncio.Event] = {}
        self._lock = asyncio.Lock()

    def _client(self, base_url: str, api_key_env: str,
                limiter: RateLimiter | None = None) -> HTTPEndpoint:
        """The HTTP endpoint of one replica; ``limiter`` (its target's) then reads the rate
        limit headers of every reply, whichever call created the endpoint first (a health
        probe creates it without one)."""
        key = (base_url, api_key_env)
        if key not in self._clients:
            self._clients[key] = HTTPEndpoint(
                base_url, os.environ.get(api_key_env) or "no-key", self.cfg.timeout_s)
        endpoint = self._clients[key]
        if limiter is not None:
            endpoint.limiter = limiter
        return endpoint

    def refuses_structured(self, target: Target) -> bool:
        """The target's endpoint refused a ``response_format`` before (this run)."""
        return target.base_urls in self._unstructured

    def limiter(self, target: Target) -> RateLimiter:
        """The rate limiter of the target's endpoint + key (its limits, else the endpoint
        config's; the stricter when roles differ)."""
        rpm = target.requests_per_minute or self.cfg.requests_per_minute
        tpm = target.tokens_per_minute or self.cfg.tokens_per_minute
        key = (target.base_urls, target.api_key_env)
        if key not in self._limiters:
            self._limiters[key] = RateLimiter(rpm, tpm)
        else:
            self._limiters[key].tighten(rpm, tpm)
        return self._limiters[key]

    def pool(self, target: Target) -> ReplicaPool:
        key = (target.base_urls, target.api_key_env)
        if key not in self._pools:
            async def probe(url: str) -> bool:
                await self._client(url, target.api_key_env).request(
                    "GET", "/models", timeout_s=min(5.0, self.cfg.timeout_s))
                return True

            self._pools[key] = ReplicaPool(target.base_urls, probe, self.cfg.health_interval_s)
        return self._pools[key]

    async def resolve_model(self, target: Target) -> str:
        """The target's model, or the endpoint's only served model when none is configured."""
        if target.model:
            return target.model
        key = (target.base_urls, target.api_key_env)
        async with self._lock:
            if key not in self._models:
                page, _, _ = await self._with_retries(
                    lambda c: c.request("GET", "/models"), "list models", target)
                ids = [m["id"] for m in (page.get("data") or [])]
                if len(ids) != 1:
                    raise CallError(f"{', '.join(target.base_urls)} serves {len(ids)} models "
                                    f"{ids[:5]}: set a model (--model, ROBUSTFT_MODEL or "
                                    "config)", 1)
                self._models[key] = ids[0]
        return self._models[key]

    async def _with_retries(self, make_call, what: str, target: Target, tokens: int = 0):
        """``make_call(client)`` on a replica chosen per attempt, each attempt admitted by the
        endpoint's rate limiter (``tokens``: its estimate); returns ``(result, attempts,
        replica_url)``. A replica that stopped answering is marked down and the next attempt
        goes to another healthy one without waiting; a 429 pauses the whole endpoint; while
        the endpoint is down (module doc) the call waits instead of counting its retries."""
        pool, attempt, limiter = self.pool(target), 0, self.limiter(target)
        failures = 0  # failed attempts that count against max_retries
        waits = 0  # 429s with a Retry-After: the endpoint said when to come back
        outage_tries = 0  # tries made while the endpoint was down
        since = time.monotonic()  # the call's previous failure (its start before the first)
        while True:
            attempt += 1
            await limiter.acquire(tokens)
            replica: Replica = pool.pick()
            replica.in_flight += 1
            try:
                result = await make_call(self._client(replica.url, target.api_key_env,
                                                      limiter))
                if note := pool.succeeded(replica):
                    self.notify(note)
                return result, attempt, replica.url
            except Exception as err:  # classify, then retry or give up
                told = (isinstance(err, HTTPStatusError) and err.status == 429
                        and retry_after(err) is not None and waits < MAX_RATE_LIMIT_WAITS)
                if told:  # a rate-limit wait the endpoint asked for is not a failed attempt
                    waits += 1
                    limiter.pause(retry_after(err))  # every request to the endpoint waits
                    continue
                if not retryable(err):
                    raise CallError(f"{what} failed after {attempt} attempt(s): "
                                    f"{describe(err)}", attempt) from err
                if replica_down(err) and pool.failover:
                    pool.failed(replica, describe(err))
                    if pool.healthy():
                        continue  # fail over to another replica now
                down = endpoint_failure(err)
                if down:
                    pool.call_failed(describe(err))
                if down and not pool.answered_since(since):  # the endpoint is down: wait
                    since = time.monotonic()
                    outage_tries += 1
                    model = f" (model {target.model})" if target.model else ""
                    await pool.wait_out(describe(err), model, outage_tries,
                                        self.cfg.backoff_s, self.outage_timeout, self.notify)
                    continue
                since = time.monotonic()
                failures += 1
                if failures > self.cfg.max_retries:
                    raise CallError(f"{what} failed after {attempt} attempt(s): "
                                    f"{describe(err)}", attempt) from err
                delay = retry_after(err)
                if delay is None:
                    delay = self.cfg.backoff_s * 2 ** (failures - 1) * (0.5 + random.random())
                if isinstance(err, HTTPStatusError) and err.status == 429:
                    limiter.pause(delay)  # every request to this endpoint waits, not just this
                    continue
                await asyncio.sleep(delay)
            finally:
                replica.in_flight -= 1

    async def chat(self, target: Target, messages: list[dict[str, str]], *, temperature: float,
                   max_tokens: int, top_logprobs: int, stop: tuple[str, ...] = (),
                   sample_index: int = 0, response_format: dict | None = None) -> Completion:
        """One chat completion with usage, latency and (when asked) logprobs.

        ``sample_index`` tells apart repeated samples of the same sampled (temperature > 0)
        request in the cache key; it is not sent to the endpoint. ``response_format`` (a JSON
        schema, which ends the reply itself: ``stop`` is then not sent) is sent unless the
        endpoint refused it before; a refusal (HTTP 400/422 naming it) is
        remembered per base URL and the request goes again without, in free text; until the
        endpoint's first structured request is answered, its other ones wait for the verdict.
        """
        model = await self.resolve_model(target)
        extra: dict[str, Any] = {}
        if top_logprobs > 0:
            extra = {"logprobs": True, "top_logprobs": top_logprobs}
        if stop:
            extra["stop"] = list(stop)
        params = {"temperature": temperature, "max_tokens": max_tokens, **extra,
                  "sample_index": sample_index if temperature > 0 else 0}
        if response_format is not None:  # the key holds what was asked, refused or not
            params["response_format"] = response_format
        key = request_key(model, messages, params)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return hit.model_copy(update={"cached": True})
        first = None  # the endpoint's first structured request: the others wait for its answer
        if response_format is not None:
            seen = self._structured_seen.get(target.base_urls)
            if seen is not None:
                await seen.wait()
            elif self.batch is None:  # (a batch's refusals come back as its lines)
                first = self._structured_seen[target.base_urls] = asyncio.Event()
            if not self.refuses_structured(target):
                extra["response_format"] = response_format
        try:
            await self.budget.reserve()
            completion = None
            try:
                completion = await self._complete(target, model, messages, temperature,
                                                  max_tokens, extra, key)
                if self.cache is not None:
                    self.cache.put(key, completion)
            finally:
                self.budget.release(completion)
        finally:
            if first is not None:
                first.set()
        return completion

    async def _complete(self, target: Target, model: str,
                        messages: list[dict[str, str]], temperature: float, max_tokens: int,
                        extra: dict[str, Any], key: str) -> Completion:
        """POST the body as is (or hand it to the batch queue) and read the JSON reply with
        plain dict access."""
        body = {"model": model, "messages": messages, "temperature": temperature,
                "max_tokens": max_tokens, **extra}
        stop = body.pop("stop") if "response_format" in body and "stop" in body else None

        async def call(client: HTTPEndpoint):
            data = await client.request("POST", "/chat/completions", body)
            if not _has_choice(data):
                raise EmptyReply("reply has no choices")
            return data

        t0 = time.perf_counter()
        estimate = estimate_messages(messages) + max_tokens
        data = None
        if self.batch is not None:  # None: the batch did not answer it; call online
            url = self.pool(target).pick().url
            data = await self.batch.call(self._client(url, target.api_key_env), key, body)
            data, attempts = (data, 1) if _has_choice(data) else (None, 0)
        batched = data is not None
        try:
            if data is None:
                data, attempts, url = await self._with_retries(call, f"chat({model})", target,
                                                               estimate)
        except CallError as err:
            refused = err.__cause__
            if "response_format" not in body or not (
                    isinstance(refused, HTTPStatusError) and refused.status in (400, 422)
                    and _REFUSAL.search(str(refused))):
                raise
            self._unstructured.add(target.base_urls)  # it said no: ask in free text from now
            del body["response_format"]  # free text ends at the prompt's stop sequences
            if stop is not None:
                body["stop"] = stop
            log.warning("%s refused structured outputs (%s); asking in free text",
                        ", ".join(target.base_urls), describe(refused))
            data, attempts, url = await self._with_retries(call, f"chat({model})", target,
                                                           estimate)
            attempts += err.attempts
        latency = time.perf_counter() - t0
        choice = data["choices"][0]
        message = choice["message"]
        content, inline, left_open = split_thinking(message.get("content") or "")
        thinking = message.get("reasoning_content") or message.get("reasoning") or inline
        logprobs = _logprobs(choice)
        if logprobs and thinking:  # answer logprobs come from the final answer's tokens only
            first = answer_suffix([t.token for t in logprobs], content)
            logprobs = logprobs[first:] if first is not None else None
        usage = data.get("usage") or {}
        completion = Completion(
            text=content, model=data.get("model") or model, logprobs=logprobs,
            latency_s=latency, attempts=attempts, finish_reason=choice.get("finish_reason"),
            endpoint=url, thinking=thinking or None, structured="response_format" in body,
            batched=batched,
            thinking_truncated=bool(thinking) and choice.get("finish_reason") == "length"
            and (left_open or not content.strip()),
            reasoning_tokens=(usage.get("completion_tokens_details") or {}).get(
                "reasoning_tokens"))
        if usage.get("prompt_tokens") is not None:  # completion tokens include thinking
            completion.prompt_tokens = usage["prompt_tokens"]
            completion.completion_tokens = usage.get("completion_tokens") or 0
        else:
            completion.prompt_tokens = estimate_messages(messages)
            completion.completion_tokens = estimate_tokens(content + (thinking or ""))
            completion.usage_source = "estimate"
        if not completion.batched:  # a batched request never took from the rate limit
            self.limiter(target).settle(
                estimate, completion.prompt_tokens + completion.completion_tokens)
        return completion

    async def embeddings(self, target: Target, texts: list[str]) -> list[list[float]]:
        """Embedding vectors of ``texts`` from ``/embeddings`` (one request for the texts not
        cached; each vector cached on arrival). Counted in the call budget like a chat call."""
        model = await self.resolve_model(target)
        keys = [request_key(model, [{"role": "embed", "content": t}], {"embedding": 1})
                for t in texts]
        known = self.cache.get_vectors(keys) if self.cache is not None else {}
        todo = [i for i, k in enumerate(keys) if k not in known]
        if todo:
            async def call(client: HTTPEndpoint):
                reply = await client.request("POST", "/embeddings",
                                             {"model": model, "input": [texts[i] for i in todo]})
                data = reply.get("data") if isinstance(reply, dict) else None
                if not isinstance(data, list) or len(data) != len(todo):
                    raise EmptyReply("embeddings reply without one vector per input")
                return [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]

            await self.budget.reserve()
            try:
                fresh, _, _ = await self._with_retries(call, f"embeddings({model})", target)
            finally:
                self.budget.release(None)
            got = {keys[i]: v for i, v in zip(todo, fresh, strict=True)}
            if self.cache is not None:
                self.cache.put_vectors(got)
            known = {**known, **got}
        return [known[k] for k in keys]

    def replicas(self) -> list[dict]:
        """Health and load of every replica this client has used."""
        return [r for p in self._pools.values() for r in p.status()]

    async def aclose(self) -> None:
        for p in self._pools.values():
            await p.close()
        for c in self._clients.values():
            await c.close()
        self._clients.clear()
