"""Budgets are named as budgets: ``call_budget`` / ``token_budget`` / ``cost_budget`` in the
config, ``--call-budget`` / ``--token-budget`` / ``--cost-budget`` on the command line and
keyword arguments of the Python API (``max_tokens`` stays what every OpenAI-compatible API
means: one reply's length, ``roles.<role>.max_tokens``). The former names still work for one
release, each with a deprecation message naming the new one."""

from __future__ import annotations

import pytest

import robustft
from eval.scripted_server import parity
from robustft.config import Config, ConfigError, RunOptions, load_config
from robustft.llm.budget import BudgetExceeded

from .conftest import write_jsonl
from .test_api import TRUTH, _rows
from .test_cli_e2e import run_cli
from .test_reliability import parity_rows
from .test_shapes_e2e import truthful_script


def test_config_budgets_and_options_override_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("call_budget: 7\ntoken_budget: 900\ncost_budget: 1.5\n"
                    "prices: {m: {input: 1, output: 2}}\n")
    cfg = load_config(path)
    assert (cfg.call_budget, cfg.token_budget, cfg.cost_budget) == (7, 900, 1.5)
    assert RunOptions().budgets(cfg) == (7, 900, 1.5)
    assert RunOptions(call_budget=3, cost_budget=0.5).budgets(cfg) == (3, 900, 0.5)
    assert RunOptions().budgets(Config()) == (None, None, None)
    assert cfg.role("reasoning").max_tokens == 768  # the per-reply limit is untouched
    assert "roles.<role>.max_tokens" in Config.model_fields["token_budget"].description
    (tmp_path / "bad.yaml").write_text("call_budget: -1\n")
    with pytest.raises(ConfigError, match="call_budget"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="needs prices"):
        RunOptions().budgets(Config(cost_budget=1.0))


def test_api_budgets_new_names_and_config(tmp_path, serve):
    srv = serve(truthful_script(TRUTH))
    kw = {"base_url": srv.base_url, "model": "m"}
    beta1 = {"selection": {"beta": 1.0}}
    with pytest.raises(BudgetExceeded, match="call budget reached"):
        robustft.curate(_rows(), output=tmp_path / "calls", call_budget=2, config=Config(**beta1),
                        **kw)
    assert len(srv.delivered) == 2
    with pytest.raises(BudgetExceeded, match="call budget reached"):  # the config's budget
        robustft.curate(_rows(), output=tmp_path / "cfg", config=Config(call_budget=3, **beta1),
                        **kw)
    assert len(srv.delivered) == 5
    with pytest.raises(BudgetExceeded, match="token budget reached"):
        robustft.curate(_rows(), output=tmp_path / "tok", token_budget=1, config=Config(**beta1),
                        **kw)
    # a whole-run budget the run fits in: it finishes, resuming the stopped run
    done = robustft.curate(_rows(), output=tmp_path / "tok", token_budget=10**6,
                           config=Config(**beta1), **kw)
    assert done.summary["fates"] == {"clean": 3, "relabeled-kept": 1}
    sent = len(srv.requests)
    with pytest.raises(ConfigError, match="needs prices"):
        robustft.curate(_rows(), output=tmp_path / "cost", cost_budget=1.0, **kw)
    assert len(srv.requests) == sent  # refused before any call


def test_api_old_names_warn_and_keep_working(tmp_path, serve):
    srv = serve(truthful_script(TRUTH))
    kw = {"base_url": srv.base_url, "model": "m", "config": Config(selection={"beta": 1.0})}
    with pytest.warns(FutureWarning, match="use call_budget") as caught:
        with pytest.raises(BudgetExceeded, match="call budget reached"):
            robustft.curate(_rows(), output=tmp_path / "calls", max_calls=2, **kw)
    assert len(srv.delivered) == 2 and caught[0].filename == __file__  # points at the caller
    with pytest.warns(FutureWarning, match=r"NOT the per-reply token limit: it is a WHOLE-RUN "
                      r"budget.*token_budget=.*roles\.<role>\.max_tokens"):
        with pytest.raises(BudgetExceeded, match="token budget reached"):
            robustft.curate(_rows(), output=tmp_path / "tok", max_tokens=256, **kw)
    with pytest.raises(TypeError, match="token_budget= only"):
        robustft.curate(_rows(), output=tmp_path / "x", token_budget=5, max_tokens=5, **kw)

    async def cell():
        return await robustft.acurate(_rows(), output=tmp_path / "calls", max_calls=10**6, **kw)

    import asyncio

    with pytest.warns(FutureWarning, match="use call_budget"):
        assert asyncio.run(cell()).summary["fates"] == {"clean": 3, "relabeled-kept": 1}


def _flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


def test_cli_budget_options_new_and_old(tmp_path, serve):
    srv = serve(parity)
    inp = str(write_jsonl(tmp_path / "in.jsonl", parity_rows(10)))
    args = ["curate", "-i", inp, "--base-url", srv.base_url, "--model", "m"]
    new = run_cli(*args, "-o", str(tmp_path / "new"), "--call-budget", "5")
    assert new.returncode == 4 and "deprecated" not in new.stderr, new.stderr[-2000:]
    assert len(srv.delivered) == 5
    old = run_cli(*args, "-o", str(tmp_path / "old"), "--max-calls", "5")
    assert old.returncode == 4 and len(srv.delivered) == 10
    assert "deprecated: --max-calls is now --call-budget" in _flat(old.stderr)
    tok = run_cli(*args, "-o", str(tmp_path / "tok"), "--max-tokens", "1")
    assert tok.returncode == 4 and "token budget reached" in _flat(tok.stderr)
    assert ("--max-tokens is now --token-budget (a whole-run budget, all calls together; a "
            "reply's length is roles.<role>.max_tokens in the config)") in _flat(tok.stderr)
    both = run_cli(*args, "-o", str(tmp_path / "both"), "--call-budget", "5", "--max-calls", "5")
    assert both.returncode == 2 and "give --call-budget only" in _flat(both.stderr)
    cost = run_cli(*args, "-o", str(tmp_path / "cost"), "--max-cost", "1")
    assert cost.returncode == 2 and "--max-cost is now --cost-budget" in _flat(cost.stderr)
    assert "needs prices" in _flat(cost.stderr)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("call_budget: 3\n")
    from_config = run_cli(*args, "-o", str(tmp_path / "cfg"), "--config", str(cfg))
    assert from_config.returncode == 4 and "call budget reached (3 calls)" in from_config.stderr
    shown = run_cli("curate", "--help", env={"COLUMNS": "200"}).stdout
    assert {"--call-budget", "--token-budget", "--cost-budget"} <= set(shown.split())
    assert "--max-tokens" not in shown and "--max-calls" not in shown  # hidden
