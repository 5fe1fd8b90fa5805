"""RobustFT's dataset-level stages: detect all → index clean → relabel noisy → select."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from robustft.config import ROLES as ALL_ROLES
from robustft.retrieval import BackgroundEmbedder, CleanIndex
from robustft.selection import select_lowest

from .robustft import build_robustft_graph
from .runner import Run, run_stage
from .state import SampleState

ROLES = ALL_ROLES[:5]  # direct, reasoning, reflection, context, reviewer
FIRST_STAGE = "detected"
FIRST_KEYS = ("experts", "reasoning_text", "reasoning_answer", "verdict", "verdict_reason")
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

    def save(state: SampleState, stage: str) -> None:
        s, err = state["sample"], state.get("errors")
        if stage == "detected" and not err and background is not None:
            background.add(s)  # clean: indexed; noisy: queried — both need the vector
        data = {"sample": s.model_dump(), **_plain(state)}
        fate = reason = None
        if stage == "detected" and (err or state.get("verdict") != "noisy"):
            fate = "error" if err else "clean"
            reason = ("detect: " + "; ".join(err)) if err else state.get("verdict_reason")
        store.save(s.id, s.row, s.source, stage, data, state.get("calls", []),
                   verdict=state.get("verdict"), original=s.label,
                   final=s.label if fate == "clean" else None, entropy=state.get("entropy"),
                   entropy_source=state.get("entropy_source"), fate=fate, reason=reason)
    return save


async def detect(run: Run, graph, background: BackgroundEmbedder | None) -> None:
    """Every sample not yet detected: experts + checker; detected samples are handed to
    ``background`` for embedding as they finish."""
    save = _saver(run, background)
    todo = [s for s in run.samples if s.id not in run.done]
    run.start("detect", len(run.samples), len(todo))
    await run_stage(graph, ({"sample": s} for s in todo), run.deps,
                    lambda st: save(st, "detected"), lambda: run.rep.advance("detect"))


async def relabel(run: Run, graph, index: CleanIndex | None,
                  known: dict[str, np.ndarray] | None) -> None:
    """Every noisy sample not yet relabeled, with its neighbours from ``index`` (searched in
    batches first, with the vectors in ``known``)."""
    by_id, deps, store = run.by_id(), run.deps, run.store
    flagged = store.verdicts("noisy")
    noisy = [sid for sid, _, stage in flagged if stage == "detected"]
    if index is not None:
        deps.index = index
        await asyncio.to_thread(index.prepare, [by_id[sid] for sid in noisy],
                                run.config.retrieval.k, known=known)
    deps.relabeling = True
    save = _saver(run, None)
    run.start("relabel", len(flagged), len(noisy))
    states = ({"sample": by_id[sid], **{k: v for k, v in store.data(sid).items() if k in _KEEP}}
              for sid in noisy)  # each record read when its sample starts: flat memory
    await run_stage(graph, states, deps, lambda st: save(st, "relabeled"),
                    lambda: run.rep.advance("relabel"))


async def stages(run: Run) -> None:
    config, store = run.config, run.store
    graph = build_robustft_graph()
    background = (BackgroundEmbedder(config.retrieval.embedder, config.retrieval.batch_size)
                  if config.relabel.context else None)
    await detect(run, graph, background)
    index = known = None
    if background is not None:
        by_id = run.by_id()
        clean = [by_id[sid] for sid, _, _ in store.verdicts("clean")]
        run.rep.note(f"indexing {len(clean)} clean samples")
        known = await background.finish()  # most were embedded during detection
        index = CleanIndex(store.dir / "index", await background.embedder())
        await asyncio.to_thread(index.build, clean, known)
    await relabel(run, graph, index, known)


def final_by(config) -> str:
    """Whose answer is the relabel: the reviewer's, or the context answer without reviewer."""
    return "reviewer" if config.relabel.reviewer else "context"


def candidate(r: dict[str, Any], by: str) -> bool:
    """A relabeled record that competes in entropy selection (no error, answer parsed)."""
    return not r.get("errors") and r.get(f"{by}_answer") is not None


def selection_key(r: dict[str, Any]) -> tuple[bool, float, int]:
    """Selection order of a candidate: known entropies first, lowest first, then input row
    (the order :func:`robustft.selection.select_lowest` keeps)."""
    e = r.get("entropy")
    unknown = e is None or math.isnan(e)
    return unknown, math.inf if unknown else e, r["row"]


def fates(run: Run) -> list[tuple[str, str, str, str | None]]:
    return fates_of(run.store.records(stage="relabeled"), run.config, run.rep)


def fates_of(records: Iterable[dict[str, Any]], config, rep,
             keep: Callable[[dict[str, Any]], bool] | None = None
             ) -> list[tuple[str, str, str, str | None]]:
    """Fates of relabeled samples: errors, unparsed reviews, then the β lowest entropies
    (``keep`` decides instead when selection was made elsewhere, e.g. across Ray shards)."""
    beta, by = config.selection.beta, final_by(config)
    out, candidates = [], []
    for r in records:
        orig = r["sample"]["label"]
        if r.get("errors"):
            out.append((r["id"], "error", "relabel: " + "; ".join(r["errors"]), None))
        elif r.get(f"{by}_answer") is None:
            out.append((r["id"], "relabeled-dropped", f"{by} reply unparsed", None))
        else:  # only what selection and the reason need: flat memory over many records
            candidates.append(({k: r.get(k) for k in ("id", "row", "entropy",
                                                      "entropy_source", f"{by}_answer")}, orig))
    ent = [c[0].get("entropy") for c in candidates]
    if keep is None:
        mask = select_lowest([math.nan if e is None else e for e in ent], beta)
    else:
        mask = [keep(r) for r, _ in candidates]
    for (r, orig), k, e in zip(candidates, mask, ent, strict=True):
        new = r[f"{by}_answer"]
        change = f"label {orig} -> {new}" if new != orig else f"label {orig} confirmed"
        e_txt = "unknown" if e is None else f"{e:.4f} ({r.get('entropy_source')})"
        if k:
            out.append((r["id"], "relabeled-kept", f"{change}; entropy {e_txt} in lowest "
                          f"{beta:.0%}", new))
        else:
            out.append((r["id"], "relabeled-dropped", f"{change}; entropy {e_txt} above the "
                          f"{beta:.0%} cutoff", new))
    n_agreement = sum(1 for r, _ in candidates if r.get("entropy_source") == "agreement")
    if n_agreement:
        rep.note(f"{n_agreement} relabeled sample(s) had no answer logprobs: their entropy "
                 "is the agreement fallback (see README, 'Selection')")
    return out
