"""CLEAR's dataset-level stages: score all → threshold γ → correct the filtered → fates.

γ is the dataset median of the confidence unless an absolute ``clear.gamma`` is set, so it is
known only after every sample is scored: the barrier between the two stages.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from robustft.confidence import threshold
from robustft.retrieval import Embedder

from .clear import build_clear_graph
from .clear_state import ClearState
from .runner import Run, run_stage

ROLES = ("sampler", "certainty", "corrector", "judge")
FIRST_STAGE = "scored"
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
            if r["stage"] in ("scored", "corrected") and not r.get("errors")
            and r.get("confidence") is not None]
    return threshold(conf, run.config.clear.gamma)


async def stages(run: Run) -> None:
    store, deps, rep, c = run.store, run.deps, run.rep, run.config.clear
    graph = build_clear_graph()
    if c.similarity == "embedding":
        deps.embedder = await asyncio.to_thread(Embedder, run.config.retrieval.embedder,
                                                run.config.retrieval.batch_size)

    def save(state: ClearState, stage: str) -> None:
        s, err = state["sample"], state.get("errors")
        store.save(s.id, s.row, s.source, stage, {"sample": s.model_dump(), **_plain(state)},
                   state.get("calls", []), original=s.label,
                   fate="error" if err else None,
                   reason=f"{stage}: " + "; ".join(err) if err else None)

    todo = [s for s in run.samples if s.id not in run.done]
    run.start("score", len(run.samples), len(todo))
    await run_stage(graph, ({"sample": s} for s in todo), deps, lambda st: save(st, "scored"),
                    lambda: rep.advance("score"))
    gamma = _gamma(run)
    store.set_meta("gamma", str(gamma))
    rep.note(f"confidence threshold γ = {gamma:.4f}"
             + (" (dataset median)" if c.gamma is None else ""))
    if not c.correct:
        return
    by_id = run.by_id()
    below = [r for r in store.records(stage="scored") if not r.get("errors")
             and r.get("confidence") is not None and r["confidence"] < gamma]
    n_below = sum(1 for r in store.records() if r["stage"] == "corrected") + len(below)
    run.start("correct", n_below, len(below))
    states = ({"sample": by_id[r["id"]], **{k: r[k] for k in FIRST_KEYS if k in r},
               "threshold": gamma} for r in below)
    await run_stage(graph, states, deps, lambda st: save(st, "corrected"),
                    lambda: rep.advance("correct"))


def _why_dropped(r: dict[str, Any], eta: float) -> str:
    if r["stage"] != "corrected":
        return "auto-correct off"
    if r.get("candidate") is None:
        return "no parseable candidate"
    if r.get("judge_confidence") is None:
        return f"candidate {r['candidate']!r} is the same answer"
    return (f"candidate {r['candidate']!r} not adopted: judge confidence "
            f"{r['judge_confidence']:.3f} ≤ η {eta}")


def fates(run: Run) -> list[tuple[str, str, str, str | None]]:
    """clean (C ≥ γ), relabeled-kept (corrected: judge confidence > η), relabeled-dropped."""
    gamma, eta = float(run.store.get_meta("gamma") or "nan"), run.config.clear.eta
    out = []
    for r in run.store.records():
        if r["stage"] not in ("scored", "corrected") or r.get("errors"):
            continue
        conf, label = r.get("confidence"), r["sample"]["label"]
        parts = (f"confidence {conf:.3f} (O={r.get('observed') or 0:.3f}, "
                 f"S={r.get('certainty') or 0:.3f})" if conf is not None else
                 "confidence unknown")
        if conf is not None and conf >= gamma:
            out.append((r["id"], "clean", f"{parts} ≥ γ {gamma:.3f}", label))
        elif r.get("judge_confidence") is not None and r["judge_confidence"] > eta:
            out.append((r["id"], "relabeled-kept", f"{parts} < γ {gamma:.3f}; corrected "
                        f"{label!r} -> {r['candidate']!r}: judge confidence "
                        f"{r['judge_confidence']:.3f} > η {eta}", r["candidate"]))
        else:
            out.append((r["id"], "relabeled-dropped", f"{parts} < γ {gamma:.3f}; "
                        + _why_dropped(r, eta), None))
    return out
