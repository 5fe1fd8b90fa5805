"""CLEAR's dataset-level stages: score all → threshold γ → correct the filtered → fates.

γ is the dataset median of the confidence unless an absolute ``clear.gamma`` is set, so it is
known only after every sample is scored: the barrier between the two stages.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from robustft.config import Config
from robustft.graph.clear import build_clear_graph
from robustft.graph.clear_state import ClearState
from robustft.graph.stages import Run, run_stage
from robustft.methods.confidence import threshold
from robustft.pipeline.contract import Fate, FateRow, Method, PlannedCall, Stage
from robustft.pipeline.fates import clear_fates
from robustft.retrieval.embedder import load_embedder
from robustft.schemas import Sample

FIRST_KEYS = ("sampled", "similarities", "matches", "verdicts", "observed", "certainty",
              "confidence")
_KEEP = (*FIRST_KEYS, "threshold", "candidate", "judge_votes", "candidate_verdicts",
         "judge_confidence", "errors")


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    out = {k: state[k] for k in _KEEP if k in state}
    for k in ("observed", "certainty", "confidence"):  # NaN is not JSON
        if k in out and out[k] is not None and math.isnan(out[k]):
            out[k] = None
    return out


def _gamma(run: Run) -> float:
    conf = [r["confidence"] for r in run.store.records()
            if r["stage"] in (Stage.SCORED, Stage.CORRECTED) and not r.get("errors")
            and r.get("confidence") is not None]
    return threshold(conf, run.config.clear.gamma)


async def stages(run: Run) -> None:
    store, deps, rep, c = run.store, run.deps, run.rep, run.config.clear
    graph = build_clear_graph()
    if c.similarity == "embedding":
        deps = replace(deps, embedder=await load_embedder(run.config, deps.client))

    def save(state: ClearState, stage: Stage) -> None:
        s, err = state["sample"], state.get("errors")
        store.save(s.id, s.row, s.source, stage, {"sample": s.model_dump(), **_plain(state)},
                   state.get("calls", []), original=s.label,
                   fate=Fate.ERROR if err else None,
                   reason=f"{stage}: " + "; ".join(err) if err else None)

    todo = [s for s in run.samples if s.id not in run.done]
    run.start("score", len(run.samples), len(todo))
    await run_stage(graph, ({"sample": s} for s in todo), deps, lambda st: save(st, Stage.SCORED),
                    lambda: rep.advance("score"))
    gamma = _gamma(run)
    store.set_meta("gamma", str(gamma))
    rep.note(f"confidence threshold γ = {gamma:.4f}"
             + (" (dataset median)" if c.gamma is None else ""))
    if not c.correct:
        return
    by_id = run.by_id()
    below = [r for r in store.records(stage=Stage.SCORED) if not r.get("errors")
             and r.get("confidence") is not None and r["confidence"] < gamma]
    n_below = sum(1 for r in store.records(stage=Stage.CORRECTED)) + len(below)
    run.start("correct", n_below, len(below))
    states = ({"sample": by_id[r["id"]], **{k: r[k] for k in FIRST_KEYS if k in r},
               "threshold": gamma} for r in below)
    await run_stage(graph, states, deps, lambda st: save(st, Stage.CORRECTED),
                    lambda: rep.advance("correct"))


def fates(run: Run) -> list[FateRow]:
    gamma = float(run.store.get_meta("gamma") or "nan")
    return clear_fates(run.store.records(), gamma, run.config.clear.eta)


def _response(config: Config, s: Sample) -> dict[str, Any]:
    return {"response": s.label}


def _none(config: Config, s: Sample) -> dict[str, Any]:
    return {}


def _one(config: Config, s: Sample) -> int:
    return 1


def _judged(config: Config, s: Sample) -> int:
    """Matcher calls of the judge similarity: one per sampled answer (free text)."""
    return config.clear.k if config.clear.similarity == "judge" and not s.is_mc else 0


_CORRECT = {"upper_bound": True}
METHOD = Method(
    name="clear", first_stage=Stage.SCORED, first_keys=FIRST_KEYS,
    calls=(
        PlannedCall("score", "sampler", "reasoning", lambda c, s: c.clear.k, _none),
        PlannedCall("score", "matcher", "match", _judged,
                    lambda c, s: {"reference": s.label, "candidate": s.label},
                    upper_bound=True),
        PlannedCall("score", "certainty", "clear_reflect", _one, _response),
        PlannedCall("score", "certainty", "clear_reflect_sure", _one, _response),
        PlannedCall("correct", "corrector", "reasoning", _one, _none, **_CORRECT),
        PlannedCall("correct", "judge", "clear_judge", lambda c, s: c.clear.judge_k,
                    lambda c, s: {"original": s.label, "candidate": s.label}, **_CORRECT),
        PlannedCall("correct", "certainty", "clear_reflect", _one, _response, **_CORRECT),
        PlannedCall("correct", "certainty", "clear_reflect_sure", _one, _response,
                    **_CORRECT),
    ),
    stages=stages, fates=fates)
