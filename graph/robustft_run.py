"""RobustFT's dataset-level stages: detect all → index clean → relabel noisy → select."""

from __future__ import annotations

import asyncio
import math
from typing import Any

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


async def stages(run: Run) -> None:
    config, store, deps, rep = run.config, run.store, run.deps, run.rep
    by_id = run.by_id()
    graph = build_robustft_graph()

    background = BackgroundEmbedder(config.retrieval.embedder, config.retrieval.batch_size)

    def save(state: SampleState, stage: str) -> None:
        s, err = state["sample"], state.get("errors")
        if stage == "detected" and not err and config.relabel.context:
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

    todo = [s for s in run.samples if s.id not in run.done]
    run.start("detect", len(run.samples), len(todo))
    await run_stage(graph, ({"sample": s} for s in todo), deps,
                    lambda st: save(st, "detected"), lambda: rep.advance("detect"))

    records = list(store.records())
    clean = [by_id[r["id"]] for r in records if r.get("verdict") == "clean"]
    noisy = [r for r in records if r["stage"] == "detected" and r.get("verdict") == "noisy"]
    if config.relabel.context:
        rep.note(f"indexing {len(clean)} clean samples")
        known = await background.finish()  # most were embedded during detection
        deps.index = CleanIndex(store.dir / "index", await background.embedder())
        await asyncio.to_thread(deps.index.build, clean, known)
        await asyncio.to_thread(deps.index.prepare, [by_id[r["id"]] for r in noisy],
                                config.retrieval.k, known=known)
    deps.relabeling = True

    n_noisy = sum(1 for r in records if r.get("verdict") == "noisy")
    run.start("relabel", n_noisy, len(noisy))
    states = ({"sample": by_id[r["id"]], **{k: r[k] for k in _KEEP if k in r}} for r in noisy)
    await run_stage(graph, states, deps, lambda st: save(st, "relabeled"),
                    lambda: rep.advance("relabel"))


def fates(run: Run) -> list[tuple[str, str, str, str | None]]:
    """Fates of relabeled samples: errors, unparsed reviews, then the β lowest entropies."""
    beta, by = run.config.selection.beta, ("reviewer" if run.config.relabel.reviewer
                                             else "context")
    out, candidates = [], []
    for r in run.store.records(stage="relabeled"):
        orig = r["sample"]["label"]
        if r.get("errors"):
            out.append((r["id"], "error", "relabel: " + "; ".join(r["errors"]), None))
        elif r.get(f"{by}_answer") is None:
            out.append((r["id"], "relabeled-dropped", f"{by} reply unparsed", None))
        else:
            candidates.append((r, orig))
    ent = [c[0].get("entropy") for c in candidates]
    keep = select_lowest([math.nan if e is None else e for e in ent], beta)
    for (r, orig), k, e in zip(candidates, keep, ent, strict=True):
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
        run.rep.note(f"{n_agreement} relabeled sample(s) had no answer logprobs: their entropy "
                     "is the agreement fallback (see README, 'Selection')")
    return out


