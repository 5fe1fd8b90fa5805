"""The endpoint check before the first sample (GET /models, a minimal request where the list
says nothing), and --dry-run naming each role's endpoint and model, with the warning about
the embedded model on a user's own data."""

from __future__ import annotations

import asyncio
import json

import pytest

from eval.scripted_server import Fault, Reply, ScriptedServer
from robustft.config import Config
from robustft.demo import DEMO_INPUT
from robustft.errors import EndpointError
from robustft.llm.preflight import preflight

from .conftest import write_jsonl
from .test_cli_e2e import run_cli
from .test_reliability import parity_rows

ROLES = ("direct", "reasoning", "reviewer")


class Guarded(ScriptedServer):
    """A server whose GET /models answers ``status`` (401: a refused key, 404: no list)."""

    def __init__(self, status: int, **kw):
        super().__init__(lambda b: Reply("Answer: A"), **kw)
        self.status = status

    def route(self, method, path, raw, headers):
        if method == "GET" and path.endswith("/models"):
            return self.status, json.dumps({"error": {"message": f"scripted {self.status}"}})
        return None


def _check(url: str, model: str | None, roles=ROLES) -> list[str]:
    cfg = Config()
    cfg.endpoint.base_url, cfg.endpoint.model = url, model
    return asyncio.run(preflight(cfg, roles))


def test_a_listed_model_is_checked_with_one_get_and_no_request(serve):
    srv = serve(lambda b: Reply("Answer: A"), models=["llama"])
    assert _check(srv.base_url, "llama") == [] and not srv.requests
    assert _check(srv.base_url, None) == []  # the endpoint's only model
    with pytest.raises(EndpointError, match=r"serves 2 models \['a', 'b'\]: set the model"):
        _check(serve(lambda b: Reply("x"), models=["a", "b"]).base_url, None)


def test_an_unlisted_model_is_settled_by_one_minimal_request(serve):
    srv = serve(lambda b: Reply("OK"), models=["served-name"])
    notes = _check(srv.base_url, "alias")  # llama-server answers any name
    assert len(srv.requests) == 1 and srv.requests[0]["max_tokens"] == 1
    assert "does not list 'alias'" in notes[0]
    def no_such_model(body):
        raise LookupError(f"model {body['model']!r} not found")  # HTTP 400

    refusing = serve(no_such_model, models=["served-name"])
    with pytest.raises(EndpointError, match=r"roles direct, reasoning, reviewer: .*\(model "
                       r"'alias'\): a minimal chat request for the model was refused \(HTTP "
                       r"400.*not found.*it lists \['served-name'\]"):
        _check(refusing.base_url, "alias")


def test_a_refused_key_and_a_missing_list(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with Guarded(401) as srv:
        with pytest.raises(EndpointError, match=r"the API key from \$OPENAI_API_KEY was "
                           r"refused \(\$OPENAI_API_KEY is not set\): HTTP 401"):
            _check(srv.base_url, "m")
    with Guarded(404) as srv:  # no /models: the minimal request decides
        assert _check(srv.base_url, "m") == [] and len(srv.requests) == 1
        with pytest.raises(EndpointError, match="lists no models: set the model"):
            _check(srv.base_url, None)


def test_a_rate_limited_endpoint_passes_with_a_note():
    with Guarded(429) as srv:
        srv.script = lambda b: Fault(429, {"Retry-After": "1"})
        notes = _check(srv.base_url, "m")
    assert len(notes) == 1 and "rate-limiting (HTTP 429)" in notes[0]


def test_one_replica_down_is_a_note_all_down_an_error(serve):
    up = serve(lambda b: Reply("Answer: A"), models=["m"])
    dead = "http://127.0.0.1:9/v1"
    notes = _check(f"{dead},{up.base_url}", "m")
    assert len(notes) == 1 and dead in notes[0] and "left out until it answers" in notes[0]
    with pytest.raises(EndpointError, match="does not answer GET /models: connection error"):
        _check(dead, "m")


def test_dry_run_names_each_roles_endpoint_and_model(tmp_path, serve):
    inp = write_jsonl(tmp_path / "in.jsonl", parity_rows(4))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("endpoint: {base_url: 'http://10.0.0.1:8000/v1', model: big, "
                   "api_key_env: VLLM_KEY}\nroles: {reviewer: {base_url: "
                   "'http://10.0.0.2:8000/v1', model: judge-model}}\n")
    res = run_cli("curate", "-i", str(inp), "-o", str(tmp_path / "run"), "-c", str(cfg),
                  "--dry-run", env={"COLUMNS": "250"})
    assert res.returncode == 0, res.stderr
    rows = {c[0]: c[1:] for line in res.stdout.splitlines()
            if len(c := [x.strip() for x in line.split("│")[1:-1]]) == 4}
    assert rows["direct"] == ["http://10.0.0.1:8000/v1", "big", "VLLM_KEY"]
    assert rows["reviewer"] == ["http://10.0.0.2:8000/v1", "judge-model", "VLLM_KEY"]
    assert "warning" not in res.stderr


def test_dry_run_without_an_endpoint_names_the_embedded_model_and_warns(tmp_path):
    inp = write_jsonl(tmp_path / "mine.jsonl", parity_rows(4))
    env = {"COLUMNS": "250"}  # (run_cli leaves OPENAI_BASE_URL out)
    res = run_cli("curate", "-i", str(inp), "-o", str(tmp_path / "run"), "--dry-run", env=env)
    assert res.returncode == 0, res.stderr
    assert "embedded llama-server" in res.stdout and "gemma-3-270m" in res.stdout
    warning = " ".join(res.stderr.split())
    assert "warning: no endpoint is configured" in warning and "near chance" in warning
    assert "--base-url URL --model NAME" in warning and "mine.jsonl" in warning
    demo = run_cli("curate", "-i", str(DEMO_INPUT), "-o", str(tmp_path / "demo"),
                   "--dry-run", env=env)
    assert demo.returncode == 0 and "warning" not in demo.stderr  # the demo is its home turf
