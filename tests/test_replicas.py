"""Several replicas per endpoint: load spread, failover when one dies, probing it back."""

import asyncio
import json
import time

from eval.scripted_server import Reply
from robustft.config import EndpointConfig, base_urls
from robustft.llm.client import LLMClient, Target
from robustft.store.runstore import RunStore

from .conftest import write_jsonl
from .test_graph import cfg_for
from .test_reliability import _outputs, parity_rows


def test_base_urls_accepts_lists_and_comma_separated_strings():
    assert base_urls("http://a/v1, http://b/v1/") == ("http://a/v1", "http://b/v1")
    assert base_urls(["http://a/v1", "http://a/v1"]) == ("http://a/v1",)
    assert base_urls(None) == () and base_urls("") == ()


def _parity(body: dict) -> Reply:
    from eval.scripted_server import parity

    return parity(body)


def test_requests_spread_over_healthy_replicas(serve):
    a, b = serve(lambda body: Reply("Answer: A")), serve(lambda body: Reply("Answer: A"))
    client = LLMClient(EndpointConfig(max_retries=2, backoff_s=0.01))
    target = Target((a.base_url, b.base_url), "m", "NONE")

    async def go():
        try:
            return await asyncio.gather(*(client.chat(
                target, [{"role": "user", "content": f"Question: {i}"}], temperature=0,
                max_tokens=8, top_logprobs=0) for i in range(40)))
        finally:
            await client.aclose()
    replies = asyncio.run(go())
    assert len(a.requests) + len(b.requests) == 40  # recorded before the reply is sent
    assert min(len(a.requests), len(b.requests)) >= 10  # both replicas carried load
    assert {r.endpoint for r in replies} == {a.base_url, b.base_url}


def test_run_completes_on_the_other_replica_when_one_dies(tmp_path, serve):
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(60))
    ref_srv = serve(_parity)
    ref = tmp_path / "ref"
    asyncio.run(_curate(cfg_for(ref_srv.base_url), inp, ref))

    dying, alive = serve(_parity, die_after=40), serve(_parity)
    cfg = cfg_for(f"{dying.base_url},{alive.base_url}")
    cfg.concurrency = 8
    run = tmp_path / "run"
    summary = asyncio.run(_curate(cfg, inp, run))

    assert dying.dead and len(dying.delivered) >= 40
    assert summary["fates"].get("error", 0) == 0 and summary["samples"] == 60
    assert _outputs(run) == _outputs(ref)  # same decisions as a run on one healthy server
    store = RunStore.reader(run)
    # (calls answered from the cache — a canary's detection asks what its source row asked
    # — keep the endpoint of the call they repeat: only the others were delivered)
    served = dict(store.db.execute("SELECT json_extract(data, '$.endpoint'), COUNT(*) "
                                   "FROM calls WHERE NOT cached GROUP BY 1"))
    assert served[dying.base_url] == len(dying.delivered)
    assert served[alive.base_url] == len(alive.delivered)
    failed_over = store.db.execute("SELECT COUNT(*) FROM calls WHERE json_extract(data, "
                                   "'$.attempts') > 1").fetchone()[0]
    assert failed_over >= 1  # requests in flight on the dying replica were sent again


def test_a_dead_replica_is_probed_and_rejoins(serve):
    a, b = serve(lambda body: Reply("Answer: A")), serve(lambda body: Reply("Answer: A"))
    client = LLMClient(EndpointConfig(max_retries=2, backoff_s=0.01, health_interval_s=0.1))
    target = Target((a.base_url, b.base_url), "m", "NONE")

    async def burst(n: int, tag: str):
        return await asyncio.gather(*(client.chat(
            target, [{"role": "user", "content": f"Question: {tag}{i}"}], temperature=0,
            max_tokens=8, top_logprobs=0) for i in range(n)))

    async def go():
        try:
            a.die()
            await burst(10, "x")  # the first request to a fails over to b
            pool = client.pool(target)
            assert [r["healthy"] for r in pool.status()] == [False, True]
            before = len(b.requests)
            await burst(10, "y")
            assert len(b.requests) - before == 10  # nothing sent to the dead replica
            a.come_back()
            deadline = time.monotonic() + 5
            while not pool.replicas[0].healthy and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert pool.replicas[0].healthy  # a probe found it answering again
            await burst(20, "z")
        finally:
            await client.aclose()
    asyncio.run(go())
    assert len(a.requests) >= 5
    assert json.dumps(client.replicas())  # status is plain data


async def _curate(cfg, inp, run):
    from robustft.graph.runner import curate

    return await curate(cfg, inp, run)
