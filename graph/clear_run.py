"""CLEAR's steps: score (per block) → threshold γ (the median over every block, or the
precision target's: decoys drawn, scored per block, cut) → correct the rows below γ (per
block) → fates (per block).

γ is the dataset median of the confidence unless an absolute ``clear.gamma`` is set, so it is
known only after every sample is scored: the barrier between the two stages.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from dataclasses import asdict, replace
from typing import Any

from robustft.agents.certainty import reflect_on
from robustft.config import Config, ConfigError
from robustft.graph import canaries
from robustft.graph.clear import build_clear_graph
from robustft.graph.nodes import failures
from robustft.graph.stages import Block, Dataset, Run, run_stage
from robustft.graph.state import ClearState
from robustft.methods.confidence import (
    combine,
    observed_consistency,
    reflection_certainty,
    threshold,
)
from robustft.methods.decoys import decoy_cutoff, signal_z
from robustft.methods.matching import exact_match
from robustft.pipeline.contract import FateRow, Method, Params, PlannedCall, Step
from robustft.pipeline.fates import clear_fates
from robustft.pipeline.plan import judged_samples
from robustft.pipeline.records import ClearRecord
from robustft.schemas import Fate, Sample, Stage


def _scored(records) -> list[ClearRecord]:
    """The records with a confidence (scored, maybe corrected since; no error)."""
    return [r for r in records if r.stage in (Stage.SCORED, Stage.CORRECTED)
            and not r.errors and r.confidence is not None]


def _saver(run: Run):
    def save(state: ClearState, stage: Stage) -> None:
        rec = run.record.from_state(state, stage)
        run.store.save(rec.id, rec.row, rec.sample.source, stage, rec.data(),
                       state.get("calls", []), original=rec.sample.label,
                       fate=Fate.ERROR if rec.errors else None,
                       reason=f"{stage}: " + "; ".join(rec.errors) if rec.errors else None)
    return save


async def _deps(run: Run):
    if run.config.clear.similarity == "embedding":
        return replace(run.deps, embedder=await run.tools.embedder())
    return run.deps


def check(data: Dataset, params: Params) -> Params:
    """Barrier before anything is called (``clear.target_precision`` set): decoys are the
    other options of multiple-choice rows."""
    if not all(s.is_mc for s in data.samples()):
        raise ConfigError("clear.target_precision needs multiple-choice rows (decoys are the "
                         "other options); this dataset has free-text responses")
    return {}


async def score(run: Run, params: Params) -> None:
    """Every sample of the block not yet scored: the confidence of its response."""
    todo = [s for s in run.samples if s.id not in run.done]
    run.start("score", len(run.samples), len(todo))
    save = _saver(run)
    await run_stage(build_clear_graph(), ({"sample": s} for s in todo), await _deps(run),
                    lambda st: save(st, Stage.SCORED), lambda: run.rep.advance("score"))


def gamma(data: Dataset, params: Params) -> Params:
    """Barrier: γ, the median confidence over every block (or ``clear.gamma``)."""
    c = data.config.clear
    g = threshold([r.confidence for r in _scored(data.records())], c.gamma)
    data.store.delete_meta("precision")
    data.store.set_meta("gamma", str(g))
    data.rep.note(f"confidence threshold γ = {g:.4f}"
                  + (" (dataset median)" if c.gamma is None else ""))
    return {"gamma": g, "gamma_text": None}


def draw_decoys(data: Dataset, params: Params) -> Params:
    """Barrier: the rows whose other options are scored as decoys, a seeded draw of
    ``clear.decoys`` from every block's scored rows, at most half of them, in input
    order."""
    ids = [r.id for r in _scored(data.records())]
    # a seed of its own: a plain Random(seed) repeats any other draw made with that seed over
    # the same rows (measured: the shared ARC files' flips were drawn that way)
    chosen = set(random.Random(f"decoys|{data.config.selection.probe_seed}").sample(
        ids, min(data.config.clear.decoys, len(ids) // 2)))
    return {"decoys": [sid for sid in ids if sid in chosen]}


async def decoys(run: Run, params: Params) -> None:
    """The block's drawn rows: each one's other options scored exactly as its response is:
    O from the row's own sampled answers, S from self-reflection on the option (new calls);
    rows whose decoys are stored already are skipped."""
    c, by_id = run.config.clear, run.by_id()
    sem, deps = asyncio.Semaphore(run.config.concurrency), await _deps(run)
    ids = [sid for sid in params["decoys"] if sid in by_id]

    async def one(sid: str) -> None:
        s, sampled = by_id[sid], run.record.read(run.store.record(sid)).sampled
        async with sem:
            options = [x for x in s.letters if x != s.label]
            reflected = await asyncio.gather(*(reflect_on(deps, s, x) for x in options))
        found, calls = {}, []
        for x, verdicts in zip(options, reflected, strict=True):
            matches = [float(exact_match(a, x, True)) for a in sampled]
            o = observed_consistency(matches, matches, c.alpha)
            cert = reflection_certainty([v.answer for v in verdicts])
            conf = None if failures(verdicts) else combine(o, cert, c.beta)
            found[x] = {"verdicts": [v.answer for v in verdicts], "observed": o,
                        "certainty": cert, "confidence": conf}
            calls += verdicts
        run.store.save_probe(sid, {"decoys": found}, calls, kind="decoy")
        run.rep.advance("decoys")

    done = {d["id"] for d in run.store.probes("decoy")}
    run.start("decoys", len(ids), len([i for i in ids if i not in done]))
    await asyncio.gather(*(one(sid) for sid in ids if sid not in done))


def _signal(scored: list[ClearRecord]) -> float:
    """:func:`signal_z` of the responses against the rows' own sampled answers."""
    top, chance = [], []
    for r in scored:
        counts = {x: sum(a == x for a in r.sampled) for x in r.sample.letters}
        if any(counts.values()):
            best = [x for x, n in counts.items() if n == max(counts.values())]
            top.append((r.sample.label in best) / len(best))
            chance.append(1 / len(counts))
    return signal_z(top, chance)


def decoy_gamma(data: Dataset, params: Params) -> Params:
    """Barrier: γ at ``clear.target_precision`` from every block's decoys (inf when no γ
    reaches it)."""
    scored = _scored(data.records())
    confidence = {r.id: r.confidence for r in scored}
    drawn = set(params["decoys"])  # not decoys stored under another draw (seed, count)
    rows = [[confidence[d["id"]],
             *(math.nan if x["confidence"] is None else x["confidence"]
               for x in d["decoys"].values())]
            for b in data.blocks() for d in b.store.probes("decoy") if d["id"] in drawn]
    cut = decoy_cutoff(list(confidence.values()), rows, data.config.clear.target_precision,
                       seed=data.config.selection.probe_seed, signal=_signal(scored))
    data.store.set_meta("precision", json.dumps(asdict(cut)))
    data.rep.note(f"precision target {cut.target}: {cut.reason}")
    g = math.inf if cut.gamma is None else cut.gamma
    data.store.set_meta("gamma", str(g))
    text = (f"γ {g:.3f} (kept rows' estimated precision {cut.estimate:.3f} ≥ target "
            f"{cut.target:.2f}; 10% bootstrap quantile {cut.lower:.3f})"
            if cut.gamma is not None else f"the precision target's γ ({cut.reason})")
    return {"gamma": g, "gamma_text": text}


async def correct(run: Run, params: Params) -> None:
    """The block's scored samples below γ: a candidate, judged."""
    g, by_id, store = params["gamma"], run.by_id(), run.store
    below = [r for r in _scored(run.records(Stage.SCORED)) if r.confidence < g]
    n_below = sum(1 for _ in store.records(Stage.CORRECTED)) + len(below)
    run.start("correct", n_below, len(below))
    states = ({**r.state(Stage.SCORED), "sample": by_id[r.id], "threshold": g} for r in below)
    save = _saver(run)
    await run_stage(build_clear_graph(), states, await _deps(run),
                    lambda st: save(st, Stage.CORRECTED), lambda: run.rep.advance("correct"))


def fates(block: Block, params: Params) -> list[FateRow]:
    return clear_fates(block.records(), params["gamma"], block.config.clear.eta,
                       params["gamma_text"])


def _response(config: Config, s: Sample) -> dict[str, Any]:
    return {"response": s.label}


def _none(config: Config, s: Sample) -> dict[str, Any]:
    return {}


def _one(config: Config, s: Sample) -> int:
    return 1


def _fresh(config: Config, s: Sample) -> int:
    """A fresh candidate: multiple choice and short answers."""
    return int(not s.long_form)


def _corrected(config: Config, s: Sample) -> int:
    """A minimal correction: long-form responses."""
    return int(s.long_form)


def _decoying(config: Config, s: Sample) -> int:
    """Self-reflection on each other option of a decoy row."""
    return len(s.letters) - 1 if config.clear.target_precision is not None and s.is_mc else 0


def _decoy_cap(config: Config, n_samples: int) -> int:
    """Decoy rows are at most ``clear.decoys`` and half the rows (3 other options each, as
    in four-option questions)."""
    return 3 * min(config.clear.decoys, n_samples // 2)


_CORRECT = {"upper_bound": True}
_DECOY = {"upper_bound": True, "at_most": _decoy_cap}


def _targeted(config: Config) -> bool:
    return config.clear.target_precision is not None


def _untargeted(config: Config) -> bool:
    return config.clear.target_precision is None


def _correcting(config: Config) -> bool:
    return config.clear.correct


METHOD = Method(
    record=ClearRecord, first_stage=Stage.SCORED,
    calls=(
        PlannedCall("score", "sampler", "reasoning", lambda c, s: c.clear.k, _none),
        PlannedCall("score", "matcher", "verify", judged_samples,
                    lambda c, s: {"reference": s.label, "response": s.label},
                    upper_bound=True),
        PlannedCall("score", "certainty", "clear_reflect", _one, _response),
        PlannedCall("score", "certainty", "clear_reflect_sure", _one, _response),
        PlannedCall("decoy", "certainty", "clear_reflect", _decoying, _response, **_DECOY),
        PlannedCall("decoy", "certainty", "clear_reflect_sure", _decoying, _response,
                    **_DECOY),
        PlannedCall("correct", "corrector", "reasoning", _fresh, _none, **_CORRECT),
        PlannedCall("correct", "corrector", "correct_context", _corrected,
                    lambda c, s: {"response": s.label, "references": [s.label] * c.clear.k,
                                  "problems": [], "examples": []}, **_CORRECT),
        PlannedCall("correct", "judge", "clear_judge", lambda c, s: c.clear.judge_k,
                    lambda c, s: {"original": s.label, "candidate": s.label}, **_CORRECT),
        PlannedCall("correct", "certainty", "clear_reflect", _one, _response, **_CORRECT),
        PlannedCall("correct", "certainty", "clear_reflect_sure", _one, _response,
                    **_CORRECT),
        *canaries.CLEAR_CALLS,  # hook: planted errors
    ),
    steps=(Step("check", check, sharded=False, applies=_targeted),
           Step("score", score, sharded=True),
           Step("gamma", gamma, sharded=False, applies=_untargeted),
           Step("draw decoys", draw_decoys, sharded=False, applies=_targeted),
           Step("decoys", decoys, sharded=True, applies=_targeted),
           Step("decoy gamma", decoy_gamma, sharded=False, applies=_targeted),
           Step("correct", correct, sharded=True, applies=_correcting),
           Step("canaries", canaries.clear_step, sharded=True, whole=True)),
    fates=fates)
