"""The method contract and the graph routers: each method's dry-run plan matches the calls a
scripted run makes; routers send each state where their declared exits say."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from types import SimpleNamespace

import pytest
from langgraph.graph import END

from robustft.agents.base import Deps
from robustft.config import ROLES, Config
from robustft.data.files import load_samples
from robustft.graph import clear_nodes, nodes
from robustft.graph.methods import METHODS, method_named
from robustft.graph.runner import curate
from robustft.llm.prompt_files import load_prompts
from robustft.methods.selection import cutoff_key, select_lowest, selection_key
from robustft.pipeline.plan import plan_calls
from robustft.schemas import Sample, Stage
from robustft.store.runstore import RunStore

from .conftest import long_form_script, write_jsonl
from .test_graph import TRUTH, cfg_for, mc_rows, truthful

STEP = {Stage.DETECTED: "detect", Stage.RELABELED: "relabel", Stage.SCORED: "score",
        Stage.CORRECTED: "correct"}


def test_roles_come_from_the_planned_calls():
    assert METHODS["robustft"].roles == ("direct", "reasoning", "reflection", "matcher",
                                         "context", "reviewer", "corruptor")
    assert METHODS["clear"].roles == ("sampler", "matcher", "certainty", "corrector", "judge",
                                      "corruptor")
    # every configurable role belongs to a method, and no method calls an unknown role
    assert {r for m in METHODS.values() for r in m.roles} == set(ROLES)
    assert "matcher" in METHODS["robustft"].roles and "matcher" in METHODS["clear"].roles
    with pytest.raises(ValueError, match="unknown method"):
        method_named("nope")


def _actual(run) -> tuple[Counter, Counter]:
    """(calls per (step, role, prompt), samples per step) of a finished run."""
    store = RunStore.open_existing(run)
    calls, samples = Counter(), Counter()
    for r in store.records():
        steps = set()
        for stage, c in store.calls(r["id"]):
            calls[STEP[stage], c.role, c.prompt] += 1
            steps.add(STEP[stage])
        samples.update(steps)
    store.close()
    return calls, samples


def _planned(cfg: Config, inp, method: str) -> dict[tuple[str, str, str], int]:
    """Planned calls per sample of each (step, role, prompt) (uniform over these samples)."""
    samples, _, _ = load_samples(inp, cfg.data)
    rows = plan_calls(cfg, load_prompts(cfg.prompts_dir), samples, METHODS[method])
    return {(r["stage"].removesuffix(" (upper bound)"), r["role"], r["prompt"]):
            r["calls"] // len(samples) for r in rows}


@pytest.mark.parametrize("rounds", [1, 2])
def test_robustft_plan_matches_a_scripted_run(tmp_path, serve, rounds):
    srv = serve(truthful)
    inp = write_jsonl(tmp_path / "in.jsonl", mc_rows())
    cfg = cfg_for(srv.base_url, detect={"reflection_rounds": rounds})
    asyncio.run(curate(cfg, inp, tmp_path / "run"))
    calls, samples = _actual(tmp_path / "run")
    per_sample = _planned(cfg, inp, "robustft")
    assert set(calls) == set(per_sample)  # no matcher calls planned or made for letters
    for (step, role, prompt), n in per_sample.items():  # detect: every sample; relabel: flips
        assert calls[step, role, prompt] == n * samples[step], (step, role, prompt)
    assert samples["detect"] == len(TRUTH) and samples["relabel"] == 2


def test_long_form_plan_counts_matcher_calls(tmp_path, serve):
    """Long responses: each expert's answer that differs from the given text is judged by
    the matcher (planned: 2 per sample, an upper bound; identical text needs no judge), and
    a flagged response gets a minimal correction (correct_context, correct_review)."""
    truth = {f"Describe item {i}.": f"Item {i} is a small red box made of wood." for i in
             range(4)}
    given = {**truth, "Describe item 1.": "Item 1 is a large blue box made of steel."}

    srv = serve(long_form_script(truth))
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "question": q, "answer": a}
                                              for i, (q, a) in enumerate(given.items())])
    cfg = cfg_for(srv.base_url, selection={"beta": 1.0})
    summary = asyncio.run(curate(cfg, inp, tmp_path / "run"))
    assert summary["fates"] == {"clean": 3, "relabeled-kept": 1}
    calls, samples = _actual(tmp_path / "run")
    per_sample = _planned(cfg, inp, "robustft")
    assert per_sample["detect", "matcher", "verify"] == 2
    assert ("relabel", "context", "context") not in per_sample  # corrected, not answered
    for (step, role, prompt), n in per_sample.items():
        if role != "matcher":
            assert calls[step, role, prompt] == n * samples[step], (step, role, prompt)
    assert calls["detect", "matcher", "verify"] == 2  # the one flipped row's two answers
    rec = RunStore.open_existing(tmp_path / "run").record("d1")
    assert [(j["ref"], j["verdict"], j["p_contradiction"]) for j in rec["judgements"]] == [
        ("direct", "contradicts", 1.0), ("reasoning", "contradicts", 1.0)]
    assert rec["final"] == truth["Describe item 1."] and "judged" in rec["verdict_reason"]


def test_selection_cutoff_keeps_what_select_lowest_keeps():
    ent = [0.3, math.nan, 0.1, 0.3, 0.2, None]
    keys = [selection_key(e, row) for row, e in enumerate(ent, start=1)]
    assert keys[1] == (True, math.inf, 2) and keys[2] == (False, 0.1, 3)
    for beta, cutoff in ((0.0, None), (0.5, (False, 0.3, 1)), (0.6, (False, 0.3, 4)),
                         (1.0, (True, math.inf, 6))):
        assert cutoff_key(keys, beta) == cutoff
        mask = select_lowest([math.nan if e is None else e for e in ent], beta)
        assert [cutoff is not None and k <= cutoff for k in keys] == mask.tolist()


def _rt(**config) -> SimpleNamespace:
    """A runtime carrying only the context, which is all a router reads."""
    cfg = Config(**config)
    return SimpleNamespace(context=Deps(config=cfg, client=None, prompts={}))


def _rt_phase(phase: str, **config) -> SimpleNamespace:
    rt = _rt(**config)
    return SimpleNamespace(context=Deps(config=rt.context.config, client=None, prompts={},
                                        phase=phase))


def test_robustft_routers():
    sample = Sample(id="s", row=1, source="f:2", question="q", options=["a", "b"], label="A")
    fresh, noisy = {"sample": sample}, {"sample": sample, "verdict": "noisy"}
    assert nodes.start(fresh, _rt()) == ["direct_expert", "reasoning_expert"]
    assert nodes.start(noisy, _rt()) == "retrieve"
    assert nodes.start(noisy, _rt(relabel={"context": False})) == "reviewer"
    # the phase is chosen per invocation: detect ends at the checker, relabel goes on
    assert nodes.after_checker(noisy, _rt_phase("detect")) == END
    assert nodes.after_checker(noisy, _rt_phase("relabel")) == "retrieve"
    assert nodes.after_checker(noisy, _rt_phase("relabel", relabel={"context": False})
                               ) == "reviewer"
    for verdict in ("clean", "error"):
        assert nodes.after_checker({"verdict": verdict}, _rt_phase("relabel")) == END
    assert nodes.after_context({}, _rt()) == "reviewer"
    assert nodes.after_context({"errors": ["context: HTTP 500"]}, _rt()) == END
    assert nodes.after_context({}, _rt(relabel={"reviewer": False})) == END


def test_clear_routers():
    sample = Sample(id="s", row=1, source="f:2", question="q", options=["a", "b"], label="A")
    assert clear_nodes.start({"sample": sample}) == ["sample_answers", "self_reflect"]
    assert clear_nodes.start({"sample": sample, "threshold": 0.5}) == "propose"
    assert clear_nodes.after_propose({"sample": sample, "candidate": "B"}) == "judge"
    assert clear_nodes.after_propose({"sample": sample, "candidate": "A"}) == END
    assert clear_nodes.after_propose({"sample": sample, "candidate": None}) == END
    assert clear_nodes.after_propose({"sample": sample, "candidate": "B",
                                      "errors": ["corrector: timeout"]}) == END
