"""Planted errors (canaries): after detection, copies of confirmed-clean rows with a wrong
response run through the method's graph like any sample; their outcomes become the run's
canary report (``summary.json`` → ``canaries``). They live in their own table and never
reach an output, a fate count or the review queue, and they run after the real rows' stages,
so they cannot move a real row's fate (selection's cutoff, the precision target's probes).

RobustFT: confirmed clean = the checker's verdict ``clean``; a canary is one invocation of
the graph in its relabel phase (detection, then relabeling when flagged), its neighbours from
the clean index without its source row. CLEAR: confirmed clean = confidence C ≥ γ (the
fate ``clean``); flagged = C < γ (the same γ: canaries never move it); fixed = a correction
adopted (judge confidence > η) that restores the original response.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import numpy as np

from robustft.agents.corruptor import corrupt
from robustft.config import Config
from robustft.graph.clear import build_clear_graph
from robustft.graph.robustft import build_robustft_graph
from robustft.graph.stages import Run, run_stage
from robustft.methods.canaries import (
    CanaryOutcome,
    canary_count,
    canary_report,
    draw_sources,
    other_answer,
    wrong_option,
)
from robustft.pipeline.contract import Params, PlannedCall
from robustft.pipeline.plan import (
    correction_vars,
    judged_experts,
    judged_samples,
    review_correction_vars,
    reviewer_vars,
)
from robustft.retrieval.embedder import vectors_of
from robustft.retrieval.index import INDEX_DIR, CleanIndex
from robustft.retrieval.vectors import read_vectors
from robustft.schemas import Sample, Stage, Verdict
from robustft.store.canaries import STAGE, CanaryStore, calls_by_stage

PLANTED, UNPLANTED, SCORED, DONE = "planted", "unplanted", "scored", "done"


def kind_of(s: Sample) -> str:
    return "choice" if s.is_mc else "long" if s.long_form else "short"


def planned(run: Run) -> int:
    """How many canaries this run plants: ``audit.canaries`` of its rows, at most
    ``audit.max_canaries`` (a pilot plants as many as the whole file's run would)."""
    a = run.config.audit
    pilot = run.store.get_meta("pilot")
    rows = json.loads(pilot)["of"] if pilot else len(run.samples)
    return canary_count(rows, a.canaries, a.max_canaries)


def _canary(s: Sample, response: str) -> Sample:
    """The copy of ``s`` with ``response``: the same prompt, nothing of the input row."""
    return Sample(id=f"canary:{s.id}", row=s.row, source=s.source, question=s.question,
                  options=s.options, label=response, truncated=s.truncated,
                  long_form=s.long_form)


async def plant(run: Run, sources: list[str]) -> dict[str, dict[str, Any]]:
    """The canaries of ``sources`` (id -> stored record), planting the missing ones: another
    option, another row's short answer, or the corruptor's changed long-form response. A
    source that cannot be made wrong (one option, no other answer, an unparsed rewrite) is
    stored as unplanted; a failed call is retried by the next invocation."""
    store, by_id, seed = CanaryStore(run.store), run.by_id(), run.config.audit.seed
    have = store.all()
    short = [s.label for s in run.samples if not s.is_mc and not s.long_form]
    sem = asyncio.Semaphore(run.config.concurrency)

    async def one(sid: str) -> None:
        s = by_id[sid]
        kind, calls, why = kind_of(s), [], None
        if kind == "choice":
            wrong = wrong_option(s.label, s.letters, seed, sid)
        elif kind == "short":
            wrong = other_answer(s.label, short, seed, sid, run.config.detect.fuzzy_threshold)
        else:
            async with sem:
                call = await corrupt(run.deps, s)
            if call.error:
                run.rep.note(f"canary of {sid}: corruptor failed ({call.error}); retried by "
                             "the next run")
                return
            calls, wrong = [call], call.answer
            why = None if wrong else "the corruptor's reply did not parse"
        cid = f"canary:{sid}"
        if wrong is None:
            store.save(cid, sid, kind, UNPLANTED, {"why": why or "no wrong response to plant"},
                       calls)
        else:
            store.save(cid, sid, kind, PLANTED, {"original": s.label,
                                                 "sample": _canary(s, wrong).model_dump()},
                       calls)

    await asyncio.gather(*(one(sid) for sid in sources if f"canary:{sid}" not in have))
    have = store.all()
    return {f"canary:{sid}": have[f"canary:{sid}"] for sid in sources
            if f"canary:{sid}" in have}


async def _drawn(run: Run, pool: list[str]) -> dict[str, dict[str, Any]] | None:
    """The run's canaries planted from ``pool`` (None: canaries off): a source that could
    not be made wrong is replaced by the next row of the seeded draw."""
    n = m = planned(run)
    if n == 0:
        run.store.delete_meta("canaries")
        return None
    while True:
        canaries = await plant(run, draw_sources(pool, m, run.config.audit.seed))
        short = sum(c["stage"] == UNPLANTED for c in canaries.values()) - (m - n)
        if short <= 0 or m >= len(pool):
            break
        m += short
    if len(pool) < n:
        run.rep.note(f"{len(pool)} confirmed-clean row(s): fewer canaries than the {n} planned")
    return canaries


def _outcome(c: dict[str, Any]) -> CanaryOutcome:
    return CanaryOutcome(c["kind"], c.get("verdict") or "error", c["original"],
                         c.get("relabel"), bool(c.get("relabeled")))


def report(run: Run, canaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The canary report (stored as meta ``canaries``, read into the summary) of the
    finished ones, with the calls they made."""
    done = [c for c in canaries.values() if c["stage"] == DONE]
    rep = canary_report(map(_outcome, done), planned(run))
    rep["unplanted"] = sum(c["stage"] == UNPLANTED for c in canaries.values())
    made = [r for r in calls_by_stage(run.store) if r[0] == STAGE]
    rep["calls"] = sum(r[3] for r in made)
    rep["tokens"] = sum(r[4] + r[5] for r in made)
    run.store.set_meta("canaries", json.dumps(rep))
    rec = rep["recall"]
    if rec["n"]:
        run.rep.note(f"canaries: {rec['k']} of {rec['n']} flagged (recall {rec['share']:.3f}; "
                     "an upper bound)")
    return rep


# ---- RobustFT -------------------------------------------------------------------------------
async def robustft_step(run: Run, params: Params) -> None:
    """RobustFT's step (after the real rows are relabeled, every row in one block): plant and
    run its canaries, then report."""
    pool = [sid for sid, _, _ in run.store.verdicts(Verdict.CLEAN)]
    canaries = await _drawn(run, pool)
    if canaries is None:
        return
    store = CanaryStore(run.store)
    todo = [c for c in canaries.values() if c["stage"] == PLANTED]
    samples = [Sample.model_validate(c["sample"]) for c in todo]
    index = None
    if run.config.relabel.context:
        index = CleanIndex(run.root / INDEX_DIR, await run.tools.embedder()).open()
    if index is not None and samples:
        known: dict[str, np.ndarray] = read_vectors(run.store.dir, [c["source"] for c in todo])
        seen = {c["id"]: known[c["source"]] for c in todo if c["source"] in known}
        vectors = await vectors_of(index.embedder, samples, seen)
        await asyncio.to_thread(index.prepare, samples, vectors, run.config.retrieval.k,
                                exclude={c["id"]: c["source"] for c in todo})
    sources = {c["id"]: c for c in todo}

    def done(state) -> None:
        c, errors = sources[state["sample"].id], state.get("errors") or []
        verdict = state.get("verdict") or Verdict.ERROR
        relabeled = verdict == Verdict.NOISY and not errors
        relabel = run.record.from_state(state, Stage.RELABELED).proposal(run.config)
        if errors and verdict != Verdict.NOISY:
            verdict = Verdict.ERROR
        store.save(c["id"], c["source"], c["kind"], DONE, {
            "original": c["original"], "sample": c["sample"], "verdict": str(verdict),
            "verdict_reason": state.get("verdict_reason"), "experts": state.get("experts"),
            "relabel": relabel if relabeled else None,
            "relabeled": relabeled, "entropy": state.get("entropy"), "errors": errors},
            state.get("calls", []))
        run.rep.advance("canaries")

    run.start("canaries", len(canaries), len(todo))
    deps = replace(run.deps, phase="relabel", index=index)
    await run_stage(build_robustft_graph(), ({"sample": s} for s in samples), deps, done,
                    lambda: None)
    report(run, {cid: c for cid, c in store.all().items() if cid in canaries})


# ---- CLEAR ----------------------------------------------------------------------------------
async def clear_step(run: Run, params: Params) -> None:
    """CLEAR's step (after γ and the corrections, every row in one block): plant canaries
    from the rows with C ≥ γ, score them (flagged: C < γ) and, with ``clear.correct``,
    correct the flagged ones; then report."""
    gamma, keys, c = params["gamma"], run.record.written_at(Stage.SCORED), run.config.clear
    pool = [r.id for r in run.records() if not r.errors
            and r.confidence is not None and r.confidence >= gamma]
    canaries = await _drawn(run, pool)
    if canaries is None:
        return
    store, graph, deps = CanaryStore(run.store), build_clear_graph(), run.deps
    if c.similarity == "embedding":
        deps = replace(deps, embedder=await run.tools.embedder())
    by_id = {cid: x for cid, x in canaries.items() if x["stage"] in (PLANTED, SCORED)}

    def save(state, stage: str, **fields: Any) -> None:
        x, s = by_id[state["sample"].id], state["sample"]
        x.update({k: state[k] for k in keys if k in state}, **fields)
        data = {k: v for k, v in x.items() if k not in ("id", "source", "kind", "stage")}
        store.save(s.id, x["source"], x["kind"], stage, data, state.get("calls", []))
        x["stage"] = stage

    def scored(state) -> None:
        conf, errors = state.get("confidence"), state.get("errors") or []
        verdict = (Verdict.ERROR if errors or conf is None or conf != conf
                   else Verdict.NOISY if conf < gamma else Verdict.CLEAN)
        fix = verdict == Verdict.NOISY and c.correct
        save(state, SCORED if fix else DONE, verdict=str(verdict), relabeled=False,
             relabel=None, errors=errors)
        run.rep.advance("canaries")

    def corrected(state) -> None:
        errors, j = state.get("errors") or [], state.get("judge_confidence")
        adopted = j is not None and j > c.eta
        save(state, DONE, relabeled=not errors, candidate=state.get("candidate"),
             judge_confidence=j, relabel=state.get("candidate") if adopted else None,
             errors=errors)

    todo = [x for x in by_id.values() if x["stage"] == PLANTED]
    run.start("canaries", len(canaries), len(todo))
    await run_stage(graph, ({"sample": Sample.model_validate(x["sample"])} for x in todo),
                    deps, scored, lambda: None)
    flagged = [x for x in by_id.values() if x["stage"] == SCORED]
    await run_stage(graph, ({"sample": Sample.model_validate(x["sample"]),
                             **{k: x[k] for k in keys if k in x}, "threshold": gamma}
                            for x in flagged), deps, corrected, lambda: None)
    report(run, {cid: x for cid, x in store.all().items() if cid in canaries})


def _cap(per_canary: int):
    def at_most(c: Config, rows: int) -> int:
        return per_canary * canary_count(rows, c.audit.canaries, c.audit.max_canaries)
    return at_most


_PLAN = {"upper_bound": True}
# A canary's expert calls repeat its source row's requests (no expert prompt shows the
# response): they come from the cache and are not planned.
ROBUSTFT_CALLS = (
    PlannedCall("canary", "corruptor", "corrupt", lambda c, s: int(s.long_form),
                lambda c, s: {"response": s.label}, at_most=_cap(1), **_PLAN),
    PlannedCall("canary", "matcher", "verify", judged_experts,
                lambda c, s: {"reference": s.label, "response": s.label},
                at_most=lambda c, n: _cap(len(c.detect.experts))(c, n), **_PLAN),
    PlannedCall("canary", "context", "context", lambda c, s: int(not s.long_form), None,
                at_most=_cap(1), **_PLAN),
    PlannedCall("canary", "context", "correct_context", lambda c, s: int(s.long_form),
                correction_vars, at_most=_cap(1), **_PLAN),
    PlannedCall("canary", "reviewer", "reviewer", lambda c, s: int(not s.long_form),
                reviewer_vars, at_most=_cap(1), **_PLAN),
    PlannedCall("canary", "reviewer", "correct_review", lambda c, s: int(s.long_form),
                review_correction_vars, at_most=_cap(1), **_PLAN),
)

CLEAR_CALLS = (
    PlannedCall("canary", "corruptor", "corrupt", lambda c, s: int(s.long_form),
                lambda c, s: {"response": s.label}, at_most=_cap(1), **_PLAN),
    PlannedCall("canary", "matcher", "verify", judged_samples,
                lambda c, s: {"reference": s.label, "response": s.label},
                at_most=lambda c, n: _cap(c.clear.k)(c, n), **_PLAN),
    PlannedCall("canary", "certainty", "clear_reflect", lambda c, s: 1 + c.clear.correct,
                lambda c, s: {"response": s.label}, at_most=lambda c, n: _cap(2)(c, n),
                **_PLAN),
    PlannedCall("canary", "certainty", "clear_reflect_sure", lambda c, s: 1 + c.clear.correct,
                lambda c, s: {"response": s.label}, at_most=lambda c, n: _cap(2)(c, n),
                **_PLAN),
    PlannedCall("canary", "corrector", "reasoning",
                lambda c, s: int(c.clear.correct and not s.long_form),
                lambda c, s: {}, at_most=_cap(1), **_PLAN),
    PlannedCall("canary", "corrector", "correct_context",
                lambda c, s: int(c.clear.correct and s.long_form),
                lambda c, s: {"response": s.label, "references": [s.label] * c.clear.k,
                              "problems": [], "examples": []}, at_most=_cap(1), **_PLAN),
    PlannedCall("canary", "judge", "clear_judge",
                lambda c, s: c.clear.judge_k if c.clear.correct else 0,
                lambda c, s: {"original": s.label, "candidate": s.label},
                at_most=lambda c, n: _cap(c.clear.judge_k)(c, n), **_PLAN),
)
