"""RobustFT's dataset-level stages: detect all → index clean → relabel noisy → select."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import numpy as np

from robustft.config import Config
from robustft.graph.robustft import build_robustft_graph
from robustft.graph.stages import Run, run_stage
from robustft.graph.state import SampleState
from robustft.methods.matching import match_mode
from robustft.methods.selection import cutoff_key
from robustft.pipeline.contract import Fate, FateRow, Method, PlannedCall, Stage
from robustft.pipeline.fates import relabel_candidates, selected_fates
from robustft.retrieval.embedder import BackgroundEmbedder, load_embedder, vectors_of
from robustft.retrieval.index import CleanIndex
from robustft.schemas import Sample

FIRST_KEYS = ("experts", "reasoning_text", "reasoning_answer", "verdict", "verdict_reason",
              "match_verdicts")
_KEEP = (*FIRST_KEYS, "neighbours", "context_answer", "reviewer_answer", "reviewer_reasoning",
         "entropy", "entropy_source", "answer_distribution", "errors")


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready part of a state (calls are stored in their own table)."""
    out = {k: state[k] for k in _KEEP if k in state}
    if "neighbours" in out:
        out["neighbours"] = [n.model_dump() for n in out["neighbours"]]
    return out


def _saver(run: Run, background: BackgroundEmbedder | None):
    store = run.store

    def save(state: SampleState, stage: Stage) -> None:
        s, err = state["sample"], state.get("errors")
        if stage == Stage.DETECTED and not err and background is not None:
            background.add(s)  # clean: indexed; noisy: queried — both need the vector
        data = {"sample": s.model_dump(), **_plain(state)}
        fate = reason = None
        if stage == Stage.DETECTED and (err or state.get("verdict") != "noisy"):
            fate = Fate.ERROR if err else Fate.CLEAN
            reason = ("detect: " + "; ".join(err)) if err else state.get("verdict_reason")
        store.save(s.id, s.row, s.source, stage, data, state.get("calls", []),
                   verdict=state.get("verdict"), original=s.label,
                   final=s.label if fate == Fate.CLEAN else None, entropy=state.get("entropy"),
                   entropy_source=state.get("entropy_source"), fate=fate, reason=reason)
    return save


async def detect(run: Run, graph, background: BackgroundEmbedder | None) -> None:
    """Every sample not yet detected: experts + checker; detected samples are handed to
    ``background`` for embedding as they finish."""
    save = _saver(run, background)
    todo = [s for s in run.samples if s.id not in run.done]
    run.start("detect", len(run.samples), len(todo))
    await run_stage(graph, ({"sample": s} for s in todo), run.deps,
                    lambda st: save(st, Stage.DETECTED), lambda: run.rep.advance("detect"))


async def relabel(run: Run, graph, index: CleanIndex | None,
                  known: dict[str, np.ndarray] | None) -> None:
    """Every noisy sample not yet relabeled, with its neighbours from ``index`` (searched in
    batches first, with the vectors in ``known``)."""
    by_id, store = run.by_id(), run.store
    flagged = store.verdicts("noisy")
    noisy = [sid for sid, _, stage in flagged if stage == Stage.DETECTED]
    if index is not None:
        queries = [by_id[sid] for sid in noisy]
        vectors = await vectors_of(index.embedder, queries, known)
        await asyncio.to_thread(index.prepare, queries, vectors, run.config.retrieval.k)
    deps = replace(run.deps, phase="relabel", index=index)
    save = _saver(run, None)
    run.start("relabel", len(flagged), len(noisy))
    states = ({"sample": by_id[sid], **{k: v for k, v in store.data(sid).items() if k in _KEEP}}
              for sid in noisy)  # each record read when its sample starts: flat memory
    await run_stage(graph, states, deps, lambda st: save(st, Stage.RELABELED),
                    lambda: run.rep.advance("relabel"))


async def stages(run: Run) -> None:
    config, store = run.config, run.store
    graph = build_robustft_graph()
    background = (BackgroundEmbedder(lambda: load_embedder(config, run.deps.client))
                  if config.relabel.context else None)
    await detect(run, graph, background)
    index = known = None
    if background is not None:
        by_id = run.by_id()
        clean = [by_id[sid] for sid, _, _ in store.verdicts("clean")]
        run.rep.note(f"indexing {len(clean)} clean samples")
        known = await background.finish()  # most were embedded during detection
        embedder = await background.embedder()
        index = CleanIndex(store.dir / "index", embedder)
        await asyncio.to_thread(index.build, clean, await vectors_of(embedder, clean, known))
    await relabel(run, graph, index, known)


def fates(run: Run) -> list[FateRow]:
    """Fates of the relabeled samples: errors, unparsed answers, then the β lowest
    entropies (the cutoff computed exactly as a Ray run computes it across blocks)."""
    out, candidates = relabel_candidates(run.store.records(stage=Stage.RELABELED), run.config)
    beta = run.config.selection.beta
    out += selected_fates(candidates, cutoff_key([c.key for c in candidates], beta), beta)
    n_agreement = sum(1 for c in candidates if c.entropy_source == "agreement")
    if n_agreement:
        run.rep.note(f"{n_agreement} relabeled sample(s) had no answer logprobs: their "
                     "entropy is the agreement fallback (see README, 'Selection')")
    return out


def _judged(config: Config, s: Sample) -> int:
    """Matcher calls of one sample: one per expert when its answers are judged."""
    mode = match_mode(config.detect.match, s.is_mc, s.long_form)
    return len(config.detect.experts) if mode == "judge" else 0


def _none(config: Config, s: Sample) -> dict[str, Any]:
    return {}


def _one(config: Config, s: Sample) -> int:
    return 1


METHOD = Method(
    name="robustft", first_stage=Stage.DETECTED, first_keys=FIRST_KEYS,
    calls=(
        PlannedCall("detect", "direct", "direct", _one, _none),
        PlannedCall("detect", "reasoning", "reasoning", _one, _none),
        PlannedCall("detect", "reflection", "reflection",
                    lambda c, s: c.detect.reflection_rounds,
                    lambda c, s: {"reasoning": "", "round": 1}),
        PlannedCall("detect", "matcher", "match", _judged,
                    lambda c, s: {"reference": s.label, "candidate": s.label},
                    upper_bound=True),
        PlannedCall("relabel", "context", "context", _one, None, upper_bound=True),
        PlannedCall("relabel", "reviewer", "reviewer", _one,
                    lambda c, s: {"reasoning": "", "reasoning_answer": "", "context_answer": ""},
                    upper_bound=True),
    ),
    stages=stages, fates=fates)
