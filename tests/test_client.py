"""The client against the scripted server: retries only where they belong, usage, logprobs."""

import asyncio
import time

import pytest

from eval.scripted_server import Fault, Reply, mc_reply
from robustft.config import EndpointConfig
from robustft.errors import EndpointOutage
from robustft.llm.client import CallError, LLMClient, Target

MSG = [{"role": "user", "content": "Question: hi"}]


def _chat(srv, model="scripted", retries=3, top_logprobs=5, outage_timeout=600.0):
    client = LLMClient(EndpointConfig(max_retries=retries, backoff_s=0.01, timeout_s=5),
                       outage_timeout=outage_timeout)

    async def go():
        try:
            return await client.chat(Target(srv.base_url, model, "NO_SUCH_KEY_VAR"), MSG,
                                     temperature=0, max_tokens=16, top_logprobs=top_logprobs)
        finally:
            await client.aclose()
    return asyncio.run(go())


def test_logprobs_usage_and_latency(serve):
    srv = serve(lambda b: mc_reply("B", ["A", "B"], confidence=0.8))
    c = _chat(srv)
    assert c.text.endswith("Answer: B") and c.usage_source == "server" and c.latency_s > 0
    answer = [t for t in c.logprobs if t.token == " B"][0]
    assert dict(answer.top)[" B"] == pytest.approx(-0.22314, abs=1e-4)  # ln 0.8
    assert srv.requests[0]["logprobs"] is True and srv.requests[0]["top_logprobs"] == 5


def test_no_logprobs_requested_when_zero(serve):
    srv = serve(lambda b: Reply("Answer: A", usage=False))
    c = _chat(srv, top_logprobs=0)
    assert c.logprobs is None and "logprobs" not in srv.requests[0]
    assert c.usage_source == "estimate" and c.completion_tokens > 0


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408, 409])
def test_retries_transient_statuses(serve, status):
    srv = serve(lambda b: Reply("Answer: A"))
    srv.faults.extend([Fault(status), Fault(status)])
    c = _chat(srv)
    assert c.attempts == 3 and len(srv.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_no_retry_on_client_errors(serve, status):
    srv = serve(lambda b: Reply("Answer: A"))
    srv.faults.append(Fault(status))
    with pytest.raises(CallError, match=f"HTTP {status}"):
        _chat(srv)
    assert len(srv.requests) == 1


def test_a_request_failing_while_others_succeed_gives_up_after_max_retries(serve):
    """The endpoint answers other calls, so this request's 500s are its own: it fails after
    max_retries (its row becomes an error row) instead of waiting for an outage to end."""
    srv = serve(lambda b: Fault(500) if "bad" in b["messages"][-1]["content"]
                else Reply("Answer: A"))
    client = LLMClient(EndpointConfig(max_retries=2, backoff_s=0.05, timeout_s=5))
    target = Target(srv.base_url, "scripted", "NONE")

    async def ask(text: str):
        return await client.chat(target, [{"role": "user", "content": text}], temperature=0,
                                 max_tokens=8, top_logprobs=0)

    async def go():
        bad = asyncio.ensure_future(ask("Question: bad"))
        i = 0
        while not bad.done():  # other calls keep succeeding meanwhile
            await ask(f"Question: good {i}")
            i += 1
            await asyncio.sleep(0.01)
        await client.aclose()
        return bad.exception()

    err = asyncio.run(go())
    assert isinstance(err, CallError) and "HTTP 500" in err.reason
    bad = [r for r in srv.requests if "bad" in r["messages"][-1]["content"]]
    # max_retries + 1 tries that saw other calls succeed; one more when its first failure came
    # before any other call had succeeded (that one waited, as in an outage)
    assert len(bad) in (3, 4)


def test_a_lone_request_waits_out_an_outage_past_max_retries(serve):
    """Nothing else answers either: the endpoint is down, so its 500s are an outage that the
    call waits out (not counted against max_retries) until the endpoint answers."""
    srv = serve(lambda b: Reply("Answer: A"))
    srv.faults.extend([Fault(500)] * 5)
    c = _chat(srv, retries=2)
    assert c.text == "Answer: A" and c.attempts == 6 and len(srv.requests) == 6


def test_retry_after_header_is_honoured(serve):
    srv = serve(lambda b: Reply("Answer: A"))
    srv.faults.append(Fault(429, {"Retry-After": "0.3"}))
    c = _chat(srv)
    assert c.attempts == 2 and c.latency_s >= 0.3


def test_endpoint_down_past_the_outage_timeout_stops_the_call():
    class Dead:
        base_url = "http://127.0.0.1:9/v1"
    t0 = time.monotonic()
    with pytest.raises(EndpointOutage, match=r"127\.0\.0\.1:9/v1 \(model scripted\) has not "
                       r"answered since .*client\.outage_timeout 1 s.*connection error"):
        _chat(Dead(), retries=1, outage_timeout=1.0)
    assert time.monotonic() - t0 < 3


def test_model_resolved_from_endpoint(serve):
    srv = serve(lambda b: Reply("Answer: A"), models=["only-model"])
    _chat(srv, model=None)
    assert srv.requests[0]["model"] == "only-model"
    srv2 = serve(lambda b: Reply("Answer: A"), models=["m1", "m2"])
    with pytest.raises(CallError, match="serves 2 models"):
        _chat(srv2, model=None)
