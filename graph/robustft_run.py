"""RobustFT's dataset-level stages: detect all → index clean → relabel noisy → select."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from robustft.config import Config
from robustft.graph import canaries
from robustft.graph.robustft import build_robustft_graph
from robustft.graph.stages import Run, run_stage
from robustft.graph.state import SampleState
from robustft.methods.label_error import fit_label_model
from robustft.methods.matching import answers_match, match_mode
from robustft.methods.precision import finite, precision_cutoff
from robustft.methods.selection import cutoff_key
from robustft.pipeline.contract import FateRow, Method, PlannedCall, Stage
from robustft.pipeline.fates import (
    final_by,
    precision_fates,
    relabel_candidates,
    selected_fates,
)
from robustft.retrieval.embedder import BackgroundEmbedder, load_embedder, vectors_of
from robustft.retrieval.index import CleanIndex, import_lancedb
from robustft.schemas import KEPT, Fate, Sample, Verdict

FIRST_KEYS = ("experts", "reasoning_text", "reasoning_answer", "verdict", "verdict_reason",
              "judgements")
_KEEP = (*FIRST_KEYS, "neighbours", "context_answer", "reviewer_answer", "reviewer_reasoning",
         "entropy", "entropy_source", "answer_distribution", "errors")


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready part of a state (calls are stored in their own table)."""
    out = {k: state[k] for k in _KEEP if k in state}
    if "neighbours" in out:
        out["neighbours"] = [n.model_dump() for n in out["neighbours"]]
    return out


def _saver(run: Run):
    store = run.store

    def save(state: SampleState, stage: Stage) -> None:
        s, err = state["sample"], state.get("errors")
        data = {"sample": s.model_dump(), **_plain(state)}
        fate = reason = None
        if stage == Stage.DETECTED and (err or state.get("verdict") != Verdict.NOISY):
            fate, reason = _detected_fate(run.config, state)
        store.save(s.id, s.row, s.source, stage, data, state.get("calls", []),
                   verdict=state.get("verdict"), original=s.label,
                   final=s.label if fate in KEPT else None, entropy=state.get("entropy"),
                   entropy_source=state.get("entropy_source"), fate=fate, reason=reason)
    return save


def _detected_fate(config: Config, state: SampleState) -> tuple[Fate, str]:
    """The fate of a sample that detection leaves not noisy: an error, clean, or unsure
    (kept as it was, or held out by ``detect.unsure``)."""
    if state.get("errors"):
        return Fate.ERROR, "detect: " + "; ".join(state["errors"])
    reason = state.get("verdict_reason") or ""
    if state.get("verdict") != Verdict.UNSURE:
        return Fate.CLEAN, reason
    how = config.detect.unsure
    if how == "keep":
        return Fate.UNSURE, f"{reason}; kept as it was (detect.unsure: keep)"
    held = ("held out until a person reviews it (detect.unsure: review)" if how == "review"
            else "dropped (detect.unsure: drop)")
    return Fate.UNSURE_DROPPED, f"{reason}; {held}"


async def detect(run: Run, graph, background: BackgroundEmbedder | None) -> None:
    """Every sample not yet detected: experts + checker. ``background`` embeds them meanwhile,
    in the order detection takes them (clean rows are indexed, noisy ones queried: both need
    the vector), from the start: handed over as they finished, the embedding fell ~4 s
    behind detection on 2 cores (ARC, 1,778 rows) and the relabel stage waited for it."""
    save = _saver(run)
    todo = [s for s in run.samples if s.id not in run.done]
    if background is not None:
        for s in todo:
            background.add(s)
    run.start("detect", len(run.samples), len(todo))
    await run_stage(graph, ({"sample": s} for s in todo), run.deps,
                    lambda st: save(st, Stage.DETECTED), lambda: run.rep.advance("detect"))


def probe_ids(run: Run) -> list[str]:
    """The clean rows held out as probes (``selection.target_precision`` set): a seeded draw
    of ``selection.probes`` (fewer when fewer qualify), in input order, from the clean rows
    whose every detection answer (direct, first reasoning, each reflection) is the label —
    multiple choice; free-text clean rows all qualify. A probe is judged against its label,
    and a clean row's label is wrong when the experts repeated a flip (measured: 8 of 392
    clean rows at 70% noise); each further vote that must agree makes that rarer."""
    sel = run.config.selection
    if sel.target_precision is None:
        return []
    clean = [sid for sid, _, _ in run.store.verdicts("clean")]
    by_id = run.by_id()
    answers = run.store.call_answers(Stage.DETECTED, ("direct", "reasoning", "reflection"))
    pool = [sid for sid in clean if not by_id[sid].is_mc
            or all(a == by_id[sid].label for a in answers.get(sid, []))]
    n = min(sel.probes, len(pool))
    chosen = set(random.Random(sel.probe_seed).sample(pool, n))
    return [sid for sid in clean if sid in chosen]


def _save_probe(run: Run, state: SampleState) -> None:
    s = state["sample"]
    answer = state.get(f"{final_by(run.config)}_answer")
    probe = {**_plain(state), "answer": answer,
             "correct": None if answer is None else answers_match(answer, s.label, s.is_mc)}
    for key in FIRST_KEYS:  # the detection's fields stay where they are
        probe.pop(key, None)
    run.store.save_probe(s.id, probe, state.get("calls", []))


def probe_label_error(run: Run, probes: list[dict[str, Any]]
                      ) -> tuple[float, list[float], dict[str, Any] | None]:
    """(share of the probes' labels estimated wrong, per probe the chance a wrong relabel
    lands on a wrong label, the label model for the meta): the one-coin latent-class model of
    :mod:`robustft.methods.label_error` fitted on every detected multiple-choice row's label
    and detection answers (direct, first reasoning, each reflection: one source each), the
    share the mean of the probes' posteriors. Free-text probes count as right-labelled (no
    options to count) and get chance 0. The meta also holds the model's share among all
    confirmed rows (``clean``): a blind audit's missed noise q is measured on those, and the
    probes (rows every answer confirms) carry fewer wrong labels, so q stands in for the
    probes' share as q · probes/clean — used as it is, it would over-correct (over-claim)."""
    by_id = run.by_id()
    chance = [1 / (len(by_id[p["id"]].letters) - 1) if by_id[p["id"]].is_mc else 0.0
              for p in probes]
    rows = [by_id[sid] for sid, _, _ in run.store.verdicts("clean", "noisy")]
    rows = [s for s in rows if s.is_mc and s.label in s.letters]
    if not rows or not probes:
        return 0.0, chance, None
    sources = {r: run.store.call_answers(Stage.DETECTED, (r,))
               for r in ("direct", "reasoning", "reflection")}
    width = 2 + run.config.detect.reflection_rounds
    answers = np.full((len(rows), width), -1)
    for i, s in enumerate(rows):
        given = [*sources["direct"].get(s.id, [None])[:1],
                 *sources["reasoning"].get(s.id, [None])[:1],
                 *sources["reflection"].get(s.id, [])][:width]
        for j, a in enumerate(given):
            answers[i, j] = s.letters.index(a) if a in s.letters else -1
    model = fit_label_model([s.letters.index(s.label) for s in rows], answers,
                            [len(s.letters) for s in rows])
    at = {s.id: i for i, s in enumerate(rows)}
    wrong = [float(model.wrong[at[p["id"]]]) if p["id"] in at else 0.0 for p in probes]
    clean = [at[sid] for sid, _, _ in run.store.verdicts("clean") if sid in at]
    meta = {"noise": model.noise, "accuracy": model.accuracy.tolist(), "rows": len(rows),
            "probes": float(np.mean(wrong)),
            "clean": float(model.wrong[clean].mean()) if clean else None}
    return float(np.mean(wrong)), chance, meta


async def relabel(run: Run, graph, index: CleanIndex | None,
                  known: dict[str, np.ndarray] | None) -> None:
    """Every noisy sample not yet relabeled, with its neighbours from ``index`` (searched in
    batches first, with the vectors in ``known``); with a precision target, the probes too:
    clean rows sent down the same path (never their own neighbour; no prompt shows a label),
    whose results are stored beside their clean records."""
    by_id, store = run.by_id(), run.store
    flagged = store.verdicts("noisy")
    noisy = [sid for sid, _, stage in flagged if stage == Stage.DETECTED]
    probes = [sid for sid in probe_ids(run) if "probe" not in store.data(sid)]
    if index is not None:
        for ids, own in ((noisy, False), (probes, True)):
            queries = [by_id[sid] for sid in ids]
            vectors = await vectors_of(index.embedder, queries, known)
            await asyncio.to_thread(index.prepare, queries, vectors, run.config.retrieval.k,
                                    exclude_self=own)
    deps = replace(run.deps, phase="relabel", index=index)
    save = _saver(run)
    run.start("relabel", len(flagged), len(noisy))
    if probes:
        run.rep.note(f"{len(probes)} probe(s): clean rows relabeled with their labels hidden")
    is_probe = set(probes)

    def state_of(sid: str) -> SampleState:
        state = {"sample": by_id[sid], **{k: v for k, v in store.data(sid).items()
                                          if k in _KEEP}}
        return {**state, "verdict": "noisy"} if sid in is_probe else state

    def done(state: SampleState) -> None:
        if state["sample"].id in is_probe:
            _save_probe(run, state)
        else:
            save(state, Stage.RELABELED)
            run.rep.advance("relabel")

    states = (state_of(sid) for sid in [*noisy, *probes])  # read when each starts: flat memory
    await run_stage(graph, states, deps, done, lambda: None)


async def stages(run: Run) -> None:
    config, store = run.config, run.store
    graph = build_robustft_graph()
    background = lancedb = None
    if config.relabel.context:
        background = BackgroundEmbedder(lambda: load_embedder(config, run.deps.client))
        lancedb = asyncio.ensure_future(asyncio.to_thread(import_lancedb))
    await detect(run, graph, background)
    index = known = None
    if background is not None:
        by_id = run.by_id()
        clean = [by_id[sid] for sid, _, _ in store.verdicts("clean")]
        run.rep.note(f"indexing {len(clean)} clean samples")
        known = await background.finish()  # most were embedded during detection
        embedder = await background.embedder()
        await lancedb
        index = CleanIndex(store.dir / "index", embedder)
        await asyncio.to_thread(index.build, clean, await vectors_of(embedder, clean, known))
    await relabel(run, graph, index, known)
    await canaries.robustft_canaries(run, graph, index, known)  # hook: planted errors


def agents_agree(s: Sample, state: dict[str, Any]) -> bool:
    """Whether the two relabel agents (context, reviewer) gave the same answer (letters;
    token F1 ≥ 0.8 for free text): on a relabel and on a probe alike."""
    return answers_match(state.get("context_answer"), state.get("reviewer_answer"), s.is_mc)


def _noting_agreement(run: Run, records: Iterable[dict[str, Any]], agree: dict[str, bool]
                      ) -> Iterator[dict[str, Any]]:
    """``records`` as they are, noting each one's :func:`agents_agree` in ``agree``."""
    by_id = run.by_id()
    for r in records:
        agree[r["id"]] = agents_agree(by_id[r["id"]], r)
        yield r


def fates(run: Run) -> list[FateRow]:
    """Fates of the relabeled samples: errors, unparsed answers, then the β lowest
    entropies (the cutoff computed exactly as a Ray run computes it across blocks) or, with
    a precision target, the relabels the probes support: by entropy and, where the probes
    show it matters, by whether the context and reviewer answers agreed."""
    sel = run.config.selection
    records = run.store.records(stage=Stage.RELABELED)
    agree: dict[str, bool] = {}
    both = run.config.relabel.context and run.config.relabel.reviewer
    if sel.target_precision is not None and both:
        records = _noting_agreement(run, records, agree)
    out, candidates = relabel_candidates(records, run.config)
    if sel.target_precision is not None:
        probes = [p for p in run.store.probes() if p.get("correct") is not None]
        label_error, chance, model = probe_label_error(run, probes)
        by_id = run.by_id()
        strata = ({"probe_agree": [agents_agree(by_id[p["id"]], p) for p in probes],
                   "agree": [agree[c.id] for c in candidates]} if both else {})
        cut = precision_cutoff([finite(p.get("entropy")) for p in probes],
                               [bool(p["correct"]) for p in probes],
                               [finite(c.entropy) for c in candidates], sel.target_precision,
                               label_error=label_error, chance=chance, **strata)
        run.store.set_meta("precision", json.dumps({**asdict(cut), "label_model": model}))
        run.rep.note(f"precision target {sel.target_precision}: {cut.reason}")
        out += precision_fates(candidates, cut, agree if both else None)
    else:
        run.store.delete_meta("precision")
        out += selected_fates(candidates, cutoff_key([c.key for c in candidates], sel.beta),
                              sel.beta)
    n_agreement = sum(1 for c in candidates if c.entropy_source == "agreement")
    if n_agreement:
        run.rep.note(f"{n_agreement} relabeled sample(s) had no answer logprobs: their "
                     "entropy is the agreement fallback (see README, 'Selection')")
    return out


def _judged(config: Config, s: Sample) -> int:
    """Matcher calls of one sample: one per expert when its answers are judged."""
    mode = match_mode(config.detect.match, s.is_mc, s.long_form)
    return len(config.detect.experts) if mode == "judge" else 0


def _answered(config: Config, s: Sample) -> int:
    """Relabels with an answer prompt: multiple choice and short answers."""
    return int(not s.long_form)


def _corrected(config: Config, s: Sample) -> int:
    """Relabels that correct a long-form response."""
    return int(s.long_form)


def _correction(config: Config, s: Sample) -> dict[str, Any]:
    k = config.retrieval.k if config.relabel.context else 0
    return {"response": s.label, "references": [s.label] * len(config.detect.experts),
            "problems": [], "examples": [{"question": s.question, "answer": s.label}] * k}


def _review_of_correction(config: Config, s: Sample) -> dict[str, Any]:
    return {"response": s.label, "proposal": s.label,
            "references": [s.label] * len(config.detect.experts), "problems": []}


def _none(config: Config, s: Sample) -> dict[str, Any]:
    return {}


def _one(config: Config, s: Sample) -> int:
    return 1


def _probing(config: Config, s: Sample) -> int:
    return int(config.selection.target_precision is not None)


def _probe_cap(config: Config, n_samples: int) -> int:
    """Probes are at most ``selection.probes`` and the (clean) rows."""
    return min(config.selection.probes, n_samples)


METHOD = Method(
    name="robustft", first_stage=Stage.DETECTED, first_keys=FIRST_KEYS,
    calls=(
        PlannedCall("detect", "direct", "direct", _one, _none),
        PlannedCall("detect", "reasoning", "reasoning", _one, _none),
        PlannedCall("detect", "reflection", "reflection",
                    lambda c, s: c.detect.reflection_rounds,
                    lambda c, s: {"reasoning": "", "round": 1}),
        PlannedCall("detect", "matcher", "verify", _judged,
                    lambda c, s: {"reference": s.label, "response": s.label},
                    upper_bound=True),
        PlannedCall("relabel", "context", "context", _answered, None, upper_bound=True),
        PlannedCall("relabel", "context", "correct_context", _corrected, _correction,
                    upper_bound=True),
        PlannedCall("relabel", "reviewer", "reviewer", _answered,
                    lambda c, s: {"reasoning": "", "reasoning_answer": "", "context_answer": ""},
                    upper_bound=True),
        PlannedCall("relabel", "reviewer", "correct_review", _corrected,
                    _review_of_correction, upper_bound=True),
        PlannedCall("probe", "context", "context", _probing, None, upper_bound=True,
                    at_most=_probe_cap),
        PlannedCall("probe", "reviewer", "reviewer", _probing,
                    lambda c, s: {"reasoning": "", "reasoning_answer": "", "context_answer": ""},
                    upper_bound=True, at_most=_probe_cap),
        *canaries.ROBUSTFT_CALLS,  # hook: planted errors
    ),
    stages=stages, fates=fates)
