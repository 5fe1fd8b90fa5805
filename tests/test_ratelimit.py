"""Rate limits against a real scripted server that answers 429 (with Retry-After) above N
requests in any sliding window: with the limit configured the client stays under it; without,
the endpoint's 429s pause every request and none fails; a whole curation completes."""

from __future__ import annotations

import asyncio
import time

import pytest

from eval.scripted_server import ScriptedServer, parity, write_parity_rows
from robustft.config import Config, RunOptions
from robustft.graph.runner import curate
from robustft.llm.client import LLMClient, Target
from robustft.llm.ratelimit import RateLimiter, parse_reset

LIMIT = (10, 1.0)  # 10 requests per second, sliding


def test_parse_reset_formats():
    assert parse_reset("1s") == 1.0 and parse_reset("6m0s") == 360.0
    assert parse_reset("20ms") == pytest.approx(0.02) and parse_reset("0.5") == 0.5
    assert parse_reset("soon") is None and parse_reset(None) is None


def test_limiter_spaces_requests_and_settles_tokens():
    async def go():
        lim = RateLimiter(requests_per_minute=1200)  # one per 50 ms
        t0 = time.monotonic()
        for _ in range(5):
            await lim.acquire()
        return time.monotonic() - t0
    assert 0.19 <= asyncio.run(go()) < 0.4  # 4 gaps of 50 ms after the first
    lim = RateLimiter(tokens_per_minute=6000)  # 100 tokens/s, bucket of 100
    asyncio.run(lim.acquire(100))
    assert lim.tokens == pytest.approx(0, abs=1)
    lim.settle(100, 40)  # the reply used 40: 60 come back
    assert lim.tokens == pytest.approx(60, abs=1)
    lim.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"})
    assert lim.paused_until - time.monotonic() == pytest.approx(2, abs=0.1)


def _burst(server: ScriptedServer, n: int, rpm: float | None) -> tuple[float, list]:
    cfg = Config()
    cfg.endpoint.base_url, cfg.endpoint.model, cfg.endpoint.backoff_s = server.base_url, "m", 0.05
    cfg.endpoint.requests_per_minute = rpm

    async def go():
        client = LLMClient(cfg.endpoint)
        target = Target(server.base_url, "m", "OPENAI_API_KEY")
        t0 = time.monotonic()
        try:
            out = await asyncio.gather(*(client.chat(
                target, [{"role": "user", "content": f"Question: Is {i} even?"}],
                temperature=0, max_tokens=8, top_logprobs=0) for i in range(n)))
            return time.monotonic() - t0, out
        finally:
            await client.aclose()
    return asyncio.run(go())


def test_configured_limit_stays_under_the_endpoints():
    with ScriptedServer(parity, rate_limit=LIMIT) as server:
        took, out = _burst(server, 40, rpm=600)
    assert len(out) == 40 and server.limited <= 2  # evenly spaced: (almost) never refused
    assert 8.0 <= 40 / took <= 10.5  # requests/s achieved vs the limit of 10


def test_unconfigured_client_follows_the_endpoints_429s():
    with ScriptedServer(parity, rate_limit=LIMIT) as server:
        took, out = _burst(server, 40, rpm=None)
    assert len(out) == 40 and server.limited > 0  # refused, paused, retried: none failed
    assert 40 / took >= 5.0


def test_a_curation_completes_under_a_rate_limit(tmp_path):
    inp = tmp_path / "in.jsonl"
    write_parity_rows(inp, 24)
    with ScriptedServer(parity, rate_limit=(20, 1.0)) as server:
        cfg = Config(concurrency=16)
        cfg.endpoint.base_url, cfg.endpoint.model = server.base_url, "m"
        cfg.endpoint.requests_per_minute = 1200
        t0 = time.monotonic()
        summary = asyncio.run(curate(cfg, inp, tmp_path / "run", options=RunOptions()))
        took = time.monotonic() - t0
        sent = len(server.requests)
    assert summary["samples"] == 24 and summary["fates"].get("error", 0) == 0
    assert summary["failed_calls"] == 0 and server.limited <= 2 and sent / took <= 20.5
