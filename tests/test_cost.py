"""Cost at configured prices: the arithmetic by hand, the dry run's estimate, the summary's cost
per role, and --cost-budget stopping a CLI run resumably (exit 4) against a real scripted server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval.scripted_server import ScriptedServer, parity, write_parity_rows
from robustft.methods.cost import call_cost, cost_by_role, price_of

PRICES = {"m": (2.0, 8.0), "gpt-4.1-mini": (0.4, 1.6)}
ROOT = Path(__file__).resolve().parent.parent


def test_cost_by_hand():
    # 1,000 prompt tokens at 2 per million + 500 completion tokens at 8 per million
    assert call_cost(PRICES, "m", 1000, 500) == pytest.approx(0.002 + 0.004)
    assert price_of(PRICES, "gpt-4.1-mini-2025-04-14") == (0.4, 1.6)  # dated snapshot
    assert call_cost(PRICES, "other", 10**6, 10**6) == 0.0
    out = cost_by_role([("direct", "m", 1000, 500), ("direct", "m", 1000, 0),
                        ("reviewer", "gpt-4.1-mini", 10**6, 10**6), ("judge", "x", 5, 5)],
                       PRICES)
    assert out["by_role"] == {"direct": pytest.approx(0.008), "judge": 0.0,
                              "reviewer": pytest.approx(2.0)}
    assert out["total"] == pytest.approx(2.008) and out["unpriced_models"] == ["x"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustft.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OPENAI_API_KEY": "x", "COLUMNS": "200"})


def test_dry_run_summary_and_cost_budget(tmp_path):
    inp = tmp_path / "in.jsonl"
    write_parity_rows(inp, 12)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("prices:\n  m: {input: 2000, output: 8000}\n")  # per million: visible costs
    with ScriptedServer(parity) as server:
        common = ["-i", str(inp), "--base-url", server.base_url, "--model", "m", "-c", str(cfg)]
        dry = _cli("curate", *common, "-o", str(tmp_path / "dry"), "--dry-run")
        assert dry.returncode == 0 and "estimated cost at most" in dry.stdout
        assert not server.requests  # the dry run calls nothing
        stopped = _cli("curate", *common, "-o", str(tmp_path / "run"), "--cost-budget", "0.5")
        assert stopped.returncode == 4, stopped.stderr[-2000:]
        assert "cost budget reached" in stopped.stderr + stopped.stdout
        sent = len(server.requests)
        done = _cli("curate", *common, "-o", str(tmp_path / "run"))
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(server.requests) > sent  # resumed: the rest was sent
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    by_role = summary["by_role"]
    want = {r: (v["prompt_tokens"] * 2000 + v["completion_tokens"] * 8000) / 1e6
            for r, v in by_role.items()}
    assert summary["cost"]["by_role"] == pytest.approx(want)
    assert summary["cost"]["total"] == pytest.approx(sum(want.values()))
    shown = _cli("summary", str(tmp_path / "run"))
    assert f"{summary['cost']['total']:.4f}" in shown.stdout
    no_prices = _cli("curate", "-i", str(inp), "-o", str(tmp_path / "x"), "--base-url",
                     "http://127.0.0.1:9/v1", "--model", "m", "--cost-budget", "1")
    assert no_prices.returncode != 0 and "needs prices" in no_prices.stderr + no_prices.stdout
