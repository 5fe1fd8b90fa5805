"""CLEAR's dataset-level stages: score all → threshold γ → correct the filtered → fates.

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
from robustft.graph.clear_state import ClearState
from robustft.graph.nodes import failures
from robustft.graph.stages import Run, run_stage
from robustft.methods.confidence import (
    combine,
    observed_consistency,
    reflection_certainty,
    threshold,
)
from robustft.methods.decoys import decoy_cutoff, signal_z
from robustft.methods.matching import exact_match, similarity_mode
from robustft.pipeline.contract import Fate, FateRow, Method, PlannedCall, Stage
from robustft.pipeline.fates import clear_fates
from robustft.retrieval.embedder import load_embedder
from robustft.schemas import Sample

FIRST_KEYS = ("sampled", "similarities", "matches", "judgements", "verdicts", "observed",
              "certainty", "confidence")
_KEEP = (*FIRST_KEYS, "threshold", "candidate", "judge_votes", "candidate_verdicts",
         "judge_confidence", "errors")


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    out = {k: state[k] for k in _KEEP if k in state}
    for k in ("observed", "certainty", "confidence"):  # NaN is not JSON
        if k in out and out[k] is not None and math.isnan(out[k]):
            out[k] = None
    return out


def _scored(run: Run) -> list[dict[str, Any]]:
    return [r for r in run.store.records() if r["stage"] in (Stage.SCORED, Stage.CORRECTED)
            and not r.get("errors") and r.get("confidence") is not None]


def _gamma(run: Run) -> float:
    return threshold([r["confidence"] for r in _scored(run)], run.config.clear.gamma)


def decoy_ids(run: Run, scored: list[dict[str, Any]]) -> list[str]:
    """The rows whose other options are scored as decoys: a seeded draw of ``clear.decoys``
    from the ``scored`` records, at most half of them, in input order."""
    ids = [r["id"] for r in scored]
    # a seed of its own: a plain Random(seed) repeats any other draw made with that seed over
    # the same rows (measured: the shared ARC files' flips were drawn that way)
    chosen = set(random.Random(f"decoys|{run.config.selection.probe_seed}").sample(
        ids, min(run.config.clear.decoys, len(ids) // 2)))
    return [sid for sid in ids if sid in chosen]


async def _score_decoys(run: Run, deps, records: dict[str, dict[str, Any]],
                        ids: list[str]) -> None:
    """Each drawn row's other options scored exactly as its response is: O from the row's
    own sampled answers, S from self-reflection on the option (new calls); rows whose decoys
    are stored already are skipped."""
    c, by_id, sem = run.config.clear, run.by_id(), asyncio.Semaphore(run.config.concurrency)

    async def one(sid: str) -> None:
        s, sampled = by_id[sid], records[sid].get("sampled") or []
        async with sem:
            options = [x for x in s.letters if x != s.label]
            reflected = await asyncio.gather(*(reflect_on(deps, s, x) for x in options))
        decoys, calls = {}, []
        for x, verdicts in zip(options, reflected, strict=True):
            matches = [float(exact_match(a, x, True)) for a in sampled]
            o = observed_consistency(matches, matches, c.alpha)
            cert = reflection_certainty([v.answer for v in verdicts])
            conf = None if failures(verdicts) else combine(o, cert, c.beta)
            decoys[x] = {"verdicts": [v.answer for v in verdicts], "observed": o,
                         "certainty": cert, "confidence": conf}
            calls += verdicts
        run.store.save_probe(sid, {"decoys": decoys}, calls, kind="decoy")
        run.rep.advance("decoys")

    done = {d["id"] for d in run.store.probes("decoy")}
    run.start("decoys", len(ids), len([i for i in ids if i not in done]))
    await asyncio.gather(*(one(sid) for sid in ids if sid not in done))


def _signal(run: Run, scored: list[dict[str, Any]]) -> float:
    """:func:`signal_z` of the responses against the rows' own sampled answers."""
    top, chance, by_id = [], [], run.by_id()
    for r in scored:
        s = by_id[r["id"]]
        counts = {x: sum(a == x for a in r.get("sampled") or []) for x in s.letters}
        if any(counts.values()):
            best = [x for x, n in counts.items() if n == max(counts.values())]
            top.append((s.label in best) / len(best))
            chance.append(1 / len(counts))
    return signal_z(top, chance)


async def _target_gamma(run: Run, deps) -> float:
    """γ from decoys at ``clear.target_precision`` (inf when no γ reaches it)."""
    scored = _scored(run)
    records = {r["id"]: r for r in scored}
    ids = decoy_ids(run, scored)
    await _score_decoys(run, deps, records, ids)
    drawn = set(ids)  # not decoys stored under another draw (seed, count)
    rows = [[records[d["id"]]["confidence"],
             *(math.nan if x["confidence"] is None else x["confidence"]
               for x in d["decoys"].values())]
            for d in run.store.probes("decoy") if d["id"] in drawn]
    cut = decoy_cutoff([r["confidence"] for r in scored], rows,
                       run.config.clear.target_precision, seed=run.config.selection.probe_seed,
                       signal=_signal(run, scored))
    run.store.set_meta("precision", json.dumps(asdict(cut)))
    run.rep.note(f"precision target {cut.target}: {cut.reason}")
    return math.inf if cut.gamma is None else cut.gamma


async def stages(run: Run) -> None:
    store, deps, rep, c = run.store, run.deps, run.rep, run.config.clear
    graph = build_clear_graph()
    if c.target_precision is not None and not all(s.is_mc for s in run.samples):
        raise ConfigError("clear.target_precision needs multiple-choice rows (decoys are the "
                         "other options); this dataset has free-text responses")
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
    if c.target_precision is None:
        store.delete_meta("precision")
        gamma = _gamma(run)
        rep.note(f"confidence threshold γ = {gamma:.4f}"
                 + (" (dataset median)" if c.gamma is None else ""))
    else:
        gamma = await _target_gamma(run, deps)
    store.set_meta("gamma", str(gamma))
    if not c.correct:
        await canaries.clear_canaries(run, graph, deps, gamma, FIRST_KEYS)  # hook: canaries
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
    await canaries.clear_canaries(run, graph, deps, gamma, FIRST_KEYS)  # hook: planted errors


def fates(run: Run) -> list[FateRow]:
    gamma = float(run.store.get_meta("gamma") or "nan")
    text = None
    if (p := run.store.get_meta("precision")) is not None:
        cut = json.loads(p)
        text = (f"γ {gamma:.3f} (kept rows' estimated precision {cut['estimate']:.3f} ≥ target "
                f"{cut['target']:.2f}; 10% bootstrap quantile {cut['lower']:.3f})"
                if cut["gamma"] is not None else f"the precision target's γ ({cut['reason']})")
    return clear_fates(run.store.records(), gamma, run.config.clear.eta, text)


def _response(config: Config, s: Sample) -> dict[str, Any]:
    return {"response": s.label}


def _none(config: Config, s: Sample) -> dict[str, Any]:
    return {}


def _one(config: Config, s: Sample) -> int:
    return 1


def _judged(config: Config, s: Sample) -> int:
    """Matcher calls of the judge similarity: one per sampled answer (free text)."""
    judged = similarity_mode(config.clear.similarity, s.is_mc, s.long_form) == "judge"
    return config.clear.k if judged else 0


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
METHOD = Method(
    name="clear", first_stage=Stage.SCORED, first_keys=FIRST_KEYS,
    calls=(
        PlannedCall("score", "sampler", "reasoning", lambda c, s: c.clear.k, _none),
        PlannedCall("score", "matcher", "verify", _judged,
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
    stages=stages, fates=fates)
