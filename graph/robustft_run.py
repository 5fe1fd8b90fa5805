"""RobustFT's steps: detect (per block) → index the clean rows → draw probes → relabel the
noisy rows (per block) → select (the cutoff over every block) → fates (per block)."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import asdict, replace
from typing import Any

from robustft.config import Config
from robustft.graph import canaries
from robustft.graph.robustft import build_robustft_graph
from robustft.graph.stages import Block, Dataset, Run, run_stage
from robustft.graph.state import SampleState
from robustft.methods.matching import answers_match
from robustft.methods.precision import finite, precision_cutoff
from robustft.methods.selection import cutoff_key
from robustft.pipeline.audit import missed_noise
from robustft.pipeline.contract import FateRow, Method, Params, PlannedCall, Step
from robustft.pipeline.fates import (
    precision_fates,
    relabel_candidates,
    selected_fates,
)
from robustft.pipeline.plan import (
    correction_vars,
    judged_experts,
    review_correction_vars,
    reviewer_vars,
)
from robustft.pipeline.probe_labels import (
    agents_agree,
    detected_rows,
    probe_label_error,
    relabel_support,
)
from robustft.pipeline.records import RobustftRecord
from robustft.retrieval.embedder import BackgroundEmbedder, vectors_of
from robustft.retrieval.index import INDEX_DIR, CleanIndex, import_lancedb
from robustft.retrieval.vectors import clean_batches, read_vectors, write_vectors
from robustft.schemas import KEPT, Fate, Sample, Stage, Verdict


def _saver(run: Run):
    store = run.store

    def save(state: SampleState, stage: Stage) -> None:
        rec = run.record.from_state(state, stage)
        fate = reason = None
        if stage == Stage.DETECTED and (rec.errors or rec.verdict != Verdict.NOISY):
            fate, reason = _detected_fate(run.config, rec)
        store.save(rec.id, rec.row, rec.sample.source, stage, rec.data(),
                   state.get("calls", []), verdict=rec.verdict, original=rec.sample.label,
                   final=rec.sample.label if fate in KEPT else None, entropy=rec.entropy,
                   entropy_source=rec.entropy_source, fate=fate, reason=reason)
    return save


def _detected_fate(config: Config, rec: RobustftRecord) -> tuple[Fate, str]:
    """The fate of a sample that detection leaves not noisy: an error, clean, or unsure
    (kept as it was, or held out by ``detect.unsure``)."""
    if rec.errors:
        return Fate.ERROR, "detect: " + "; ".join(rec.errors)
    reason = rec.verdict_reason or ""
    if rec.verdict != Verdict.UNSURE:
        return Fate.CLEAN, reason
    how = config.detect.unsure
    if how == "keep":
        return Fate.UNSURE, f"{reason}; kept as it was (detect.unsure: keep)"
    held = ("held out until a person reviews it (detect.unsure: review)" if how == "review"
            else "dropped (detect.unsure: drop)")
    return Fate.UNSURE_DROPPED, f"{reason}; {held}"


async def detect(run: Run, params: Params) -> None:
    """Every sample of the block not yet detected: experts + checker. With context, an
    embedder embeds them meanwhile, in the order detection takes them (clean rows are
    indexed, noisy ones queried: both need the vector), from the start: handed over as they
    finished, the embedding fell ~4 s behind detection on 2 cores (ARC, 1,778 rows) and the
    relabel stage waited for it; the block's vectors are then written beside its store."""
    save = _saver(run)
    todo = [s for s in run.samples if s.id not in run.done]
    background = lancedb = None
    if run.config.relabel.context:
        background = BackgroundEmbedder(run.tools.embedder)
        for s in todo:
            background.add(s)
        if run.one_process:  # the index is built here next: LanceDB loads meanwhile
            lancedb = asyncio.ensure_future(asyncio.to_thread(import_lancedb))
    run.start("detect", len(run.samples), len(todo))
    await run_stage(build_robustft_graph(), ({"sample": s} for s in todo), run.deps,
                    lambda st: save(st, Stage.DETECTED), lambda: run.rep.advance("detect"))
    if background is not None:
        by_id, detected = run.by_id(), run.store.verdicts(Verdict.CLEAN, Verdict.NOISY)
        samples = [by_id[sid] for sid, _, _ in detected]
        # from here the index is on the way (a pilot times that stage from this note)
        run.rep.note(f"indexing {sum(v == Verdict.CLEAN for _, v, _ in detected)} clean "
                     "samples")
        # (samples detected before a restart are embedded now)
        known = await vectors_of(await run.tools.embedder(), samples, await background.finish())
        write_vectors(run.store.dir, samples, known, [v for _, v, _ in detected])
    if lancedb is not None:
        await lancedb


def index(data: Dataset, params: Params) -> Params:
    """Barrier: the clean rows of every block, streamed into one LanceDB table."""
    CleanIndex(data.root / INDEX_DIR, None).build_from(clean_batches(data.dirs))
    return {}


def probe_pool(block: Block) -> list[str]:
    """The clean rows of one block that may become probes, in input order: multiple choice
    whose every detection answer (direct, first reasoning, each reflection) is the label;
    free-text clean rows all qualify. A probe is judged against its label, and a clean row's
    label is wrong when the experts repeated a flip (measured: 8 of 392 clean rows at 70%
    noise); each further vote that must agree makes that rarer."""
    answers = block.store.call_answers(Stage.DETECTED, ("direct", "reasoning", "reflection"))
    return [r.id for r in block.records(Stage.DETECTED)
            if r.verdict == Verdict.CLEAN and (not r.sample.is_mc or all(
                a == r.sample.label for a in answers.get(r.id, [])))]


def probes(data: Dataset, params: Params) -> Params:
    """Barrier (``selection.target_precision`` set): the clean rows held out as probes, a
    seeded draw of ``selection.probes`` (fewer when fewer qualify) from the
    :func:`probe_pool` of every block, in input order."""
    sel = data.config.selection
    pool = [sid for block in data.blocks() for sid in probe_pool(block)]
    chosen = set(random.Random(sel.probe_seed).sample(pool, min(sel.probes, len(pool))))
    return {"probes": [sid for sid in pool if sid in chosen]}


def _save_probe(run: Run, state: SampleState) -> None:
    rec = run.record.from_state(state, Stage.RELABELED)
    answer = rec.proposal(run.config)
    probe = {k: v for k, v in rec.data().items()
             if k not in ("sample", *run.record.written_at(Stage.DETECTED))}
    probe |= {"answer": answer, "correct": None if answer is None
              else answers_match(answer, rec.sample.label, rec.sample.is_mc)}
    run.store.save_probe(rec.id, probe, state.get("calls", []))


async def relabel(run: Run, params: Params) -> None:
    """Every noisy sample of the block not yet relabeled, with its neighbours from the index
    (searched in batches first, with the vectors the detect step wrote); with a precision
    target, the block's probes too: clean rows sent down the same path (never their own
    neighbour; no prompt shows a label), whose results are stored beside their clean
    records."""
    by_id, store = run.by_id(), run.store
    flagged = store.verdicts(Verdict.NOISY)
    noisy = [sid for sid, _, stage in flagged if stage == Stage.DETECTED]
    probes = [sid for sid in params.get("probes", ())
              if sid in by_id and "probe" not in store.data(sid)]
    index = None
    if run.config.relabel.context:
        index = CleanIndex(run.root / INDEX_DIR, await run.tools.embedder()).open()
        known = read_vectors(store.dir, [*noisy, *probes])
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
        state = {**run.record.read(store.record(sid)).state(Stage.DETECTED),
                 "sample": by_id[sid]}
        return {**state, "verdict": Verdict.NOISY} if sid in is_probe else state

    def done(state: SampleState) -> None:
        if state["sample"].id in is_probe:
            _save_probe(run, state)
        else:
            save(state, Stage.RELABELED)
            run.rep.advance("relabel")

    states = (state_of(sid) for sid in [*noisy, *probes])  # read when each starts: flat memory
    await run_stage(build_robustft_graph(), states, deps, done, lambda: None)


def _candidates(data: Dataset, agree: dict[str, bool]):
    """Every block's selection candidates, noting in ``agree`` whether each one's two relabel
    agents agreed."""
    for block in data.blocks():
        yield from _block_candidates(block, agree)


def _block_candidates(block: Block, agree: dict[str, bool]):
    records = list(block.records(Stage.RELABELED))
    for r in records:
        agree[r.id] = agents_agree(r.sample.is_mc, r.context_answer, r.reviewer_answer)
    return relabel_candidates(records, block.config)[1]


def _strata(config: Config) -> bool:
    """Whether the precision fit may split on agreement (both relabel agents answer)."""
    return config.relabel.context and config.relabel.reviewer


def select(data: Dataset, params: Params) -> Params:
    """Barrier: the cutoff over every block's relabels: the β lowest entropies (ties by
    input row), or, with a precision target, the relabels the probes support: by entropy
    and, where the probes show it matters, by whether the context and reviewer answers
    agreed."""
    sel, store = data.config.selection, data.store
    agree: dict[str, bool] = {}
    candidates = list(_candidates(data, agree))
    n_agreement = sum(1 for c in candidates if c.entropy_source == "agreement")
    if n_agreement:
        data.rep.note(f"{n_agreement} relabeled sample(s) had no answer logprobs: their "
                      "entropy is the agreement fallback (see the guide, 'Selection')")
    if sel.target_precision is None:
        store.delete_meta("precision")
        return {"cutoff": cutoff_key([c.key for c in candidates], sel.beta)}
    probes = [p for b in data.blocks() for p in b.store.probes() if p.get("correct") is not None]
    rows = detected_rows(data.config, data.blocks(), probes)  # read once, for both models
    label_error, chance, model = probe_label_error(rows, probes)
    audited = missed_noise(data.root)
    if audited is not None and model is not None:
        # the blind audit's missed noise q (wrong labels among confirmed rows), scaled to
        # the probes, which carry fewer: q · probes / clean (the label model's shares; as
        # it is where the model sees no wrong label among confirmed rows at all)
        label_error = audited.value * (model["probes"] / model["clean"] if model["clean"]
                                       else 1.0)
        model = {**model, "audit": {"missed_noise": audited.value,
                                    "interval": [audited.low, audited.high]}}
        data.rep.note(f"probe labels {label_error:.2%} wrong, from the blind audit's missed "
                      f"noise {audited.value:.1%}")
    # a second, probe-free estimate of each relabel's accuracy: agreement of its sources
    support, relabel_model = relabel_support(rows, [(c.id, c.answer) for c in candidates])
    if relabel_model is None:
        support = None
    # (a probe's chance is above 0 exactly when it is multiple choice)
    strata = ({"probe_agree": [agents_agree(n > 0, p.get("context_answer"),
                                            p.get("reviewer_answer"))
                               for p, n in zip(probes, chance, strict=True)],
               "agree": [agree[c.id] for c in candidates]} if _strata(data.config) else {})
    cut = precision_cutoff([finite(p.get("entropy")) for p in probes],
                           [bool(p["correct"]) for p in probes],
                           [finite(c.entropy) for c in candidates], sel.target_precision,
                           label_error=label_error, chance=chance, support=support, **strata)
    store.set_meta("precision", json.dumps({**asdict(cut), "label_model": model,
                                            "relabel_model": relabel_model}))
    data.rep.note(f"precision target {sel.target_precision}: {cut.reason}")
    return {"precision": cut}


def fates(block: Block, params: Params) -> list[FateRow]:
    """Fates of the block's relabeled samples: errors, unparsed answers, then the selection
    the cutoff of :func:`select` makes (detection decided the others' as it saved them)."""
    config = block.config
    records = list(block.records(Stage.RELABELED))
    out, candidates = relabel_candidates(records, config)
    if config.selection.target_precision is not None:
        agree = {r.id: agents_agree(r.sample.is_mc, r.context_answer, r.reviewer_answer)
                 for r in records} if _strata(config) else None
        return out + precision_fates(candidates, params["precision"], agree)
    return out + selected_fates(candidates, params["cutoff"], config.selection.beta)


def _answered(config: Config, s: Sample) -> int:
    """Relabels with an answer prompt: multiple choice and short answers."""
    return int(not s.long_form)


def _corrected(config: Config, s: Sample) -> int:
    """Relabels that correct a long-form response."""
    return int(s.long_form)


def _none(config: Config, s: Sample) -> dict[str, Any]:
    return {}


def _one(config: Config, s: Sample) -> int:
    return 1


def _probing(config: Config, s: Sample) -> int:
    return int(config.selection.target_precision is not None)


def _probe_cap(config: Config, n_samples: int) -> int:
    """Probes are at most ``selection.probes`` and the (clean) rows."""
    return min(config.selection.probes, n_samples)


def _context(config: Config) -> bool:
    return config.relabel.context


def _targeted(config: Config) -> bool:
    return config.selection.target_precision is not None


METHOD = Method(
    record=RobustftRecord, first_stage=Stage.DETECTED,
    calls=(
        PlannedCall("detect", "direct", "direct", _one, _none),
        PlannedCall("detect", "reasoning", "reasoning", _one, _none),
        PlannedCall("detect", "reflection", "reflection",
                    lambda c, s: c.detect.reflection_rounds,
                    lambda c, s: {"reasoning": "", "round": 1}),
        PlannedCall("detect", "matcher", "verify", judged_experts,
                    lambda c, s: {"reference": s.label, "response": s.label},
                    upper_bound=True),
        PlannedCall("relabel", "context", "context", _answered, None, upper_bound=True),
        PlannedCall("relabel", "context", "correct_context", _corrected, correction_vars,
                    upper_bound=True),
        PlannedCall("relabel", "reviewer", "reviewer", _answered,
                    reviewer_vars,
                    upper_bound=True),
        PlannedCall("relabel", "reviewer", "correct_review", _corrected,
                    review_correction_vars, upper_bound=True),
        PlannedCall("probe", "context", "context", _probing, None, upper_bound=True,
                    at_most=_probe_cap),
        PlannedCall("probe", "reviewer", "reviewer", _probing,
                    reviewer_vars,
                    upper_bound=True, at_most=_probe_cap),
        *canaries.ROBUSTFT_CALLS,  # hook: planted errors
    ),
    steps=(Step("detect", detect, sharded=True),
           Step("index", index, sharded=False, applies=_context),
           Step("probes", probes, sharded=False, applies=_targeted),
           Step("relabel", relabel, sharded=True),
           Step("select", select, sharded=False),
           Step("canaries", canaries.robustft_step, sharded=True, whole=True)),
    fates=fates)
