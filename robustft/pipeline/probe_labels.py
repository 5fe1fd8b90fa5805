"""What the precision target needs beyond entropies: how many of the probes' labels are
themselves wrong (a latent-class fit over every detected row) and whether the two relabel
agents agreed (the strata the accuracy fit may split on)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from robustft.config import Config
from robustft.methods.label_error import fit_label_model, posterior_of
from robustft.methods.matching import answers_match
from robustft.schemas import Stage, Verdict

ROLES = ("direct", "reasoning", "reflection")


def agents_agree(is_mc: bool, context: str | None, reviewer: str | None) -> bool:
    """Whether the two relabel agents (context, reviewer) gave the same answer (letters;
    token F1 ≥ 0.8 for free text): on a relabel and on a probe alike."""
    return answers_match(context, reviewer, is_mc)


@dataclass
class DetectedRows:
    """Every detected multiple-choice row whose label is one of its options, as option
    indices (−1 where none): the label, one source per detection answer (direct, first
    reasoning, each reflection: the first ``detection`` columns of ``answers``), then the
    relabel agents' answers (context, reviewer) — on the relabels (their records) and the
    probes, −1 elsewhere."""

    ids: list[str]
    labels: np.ndarray  # (rows,)
    answers: np.ndarray  # (rows, detection + 2)
    sizes: np.ndarray  # (rows,) option counts
    letters: list[list[str]]
    clean: list[int]  # positions of the confirmed rows
    detection: int  # how many of the columns are detection answers

    def __post_init__(self) -> None:
        self.at = {sid: i for i, sid in enumerate(self.ids)}


def detected_rows(config: Config, blocks: Iterable[Any], probes: list[dict[str, Any]]
                  ) -> DetectedRows:
    """The :class:`DetectedRows` of every block (a store and its typed records, in input
    order), read once; ``probes``: the stored probe results (their relabel answers)."""
    width = 2 + config.detect.reflection_rounds
    relabel = {p["id"]: (p.get("context_answer"), p.get("reviewer_answer")) for p in probes}
    ids, labels, answers, sizes, letters, clean = [], [], [], [], [], []
    for block in blocks:
        sources = {r: block.store.call_answers(Stage.DETECTED, (r,)) for r in ROLES}
        for rec in block.records():
            s = rec.sample
            if rec.verdict not in (Verdict.CLEAN, Verdict.NOISY) or not s.is_mc \
                    or s.label not in s.letters:
                continue
            given = [*sources["direct"].get(s.id, [None])[:1],
                     *sources["reasoning"].get(s.id, [None])[:1],
                     *sources["reflection"].get(s.id, [])][:width]
            given += [None] * (width - len(given))
            given += relabel.get(s.id) or [getattr(rec, "context_answer", None),
                                           getattr(rec, "reviewer_answer", None)]
            if rec.verdict == Verdict.CLEAN:
                clean.append(len(ids))
            ids.append(s.id)
            labels.append(s.letters.index(s.label))
            answers.append([s.letters.index(a) if a in s.letters else -1 for a in given])
            sizes.append(len(s.letters))
            letters.append(s.letters)
    return DetectedRows(ids, np.array(labels, dtype=int),
                        np.array(answers, dtype=int).reshape(len(ids), width + 2),
                        np.array(sizes, dtype=int), letters, clean, width)


def probe_label_error(rows: DetectedRows, probes: list[dict[str, Any]]
                      ) -> tuple[float, list[float], dict[str, Any] | None]:
    """(share of the probes' labels estimated wrong, per probe the chance a wrong relabel
    lands on a wrong label, the label model for the meta): the one-coin latent-class model of
    :mod:`robustft.methods.label_error` fitted on every detected multiple-choice row's label
    and detection answers (direct, first reasoning, each reflection: one source each), the
    share the mean of the probes' posteriors. Free-text probes count as right-labelled (no
    options to count) and get chance 0. The meta also holds the model's share among all
    confirmed rows (``clean``): a blind audit's missed noise q is measured on those, and the
    probes (rows every answer confirms) carry fewer wrong labels, so q stands in for the
    probes' share as q · probes/clean — used as it is, it would over-correct (over-claim).
    The relabel agents' answers are no source here: a probe is judged on them, and its
    label's prior must not already know the verdict."""
    at = rows.at
    chance = [1 / (rows.sizes[at[p["id"]]] - 1) if p["id"] in at else 0.0 for p in probes]
    if not rows.ids or not probes:
        return 0.0, chance, None
    model = fit_label_model(rows.labels, rows.answers[:, :rows.detection], rows.sizes)
    wrong = [float(model.wrong[at[p["id"]]]) if p["id"] in at else 0.0 for p in probes]
    meta = {"noise": model.noise, "accuracy": model.accuracy.tolist(), "rows": len(rows.ids),
            "probes": float(np.mean(wrong)),
            "clean": float(model.wrong[rows.clean].mean()) if rows.clean else None}
    return float(np.mean(wrong)), chance, meta


def relabel_support(rows: DetectedRows, candidates: list[tuple[str, str]]
                    ) -> tuple[list[float], dict[str, Any] | None]:
    """(per candidate (id, answer) the probability that its answer is right, NaN where the
    model has none (free text), the model for the meta): a second, probe-free estimate of
    each relabel's accuracy — the one-coin latent-class model of
    :mod:`robustft.methods.label_error` fitted on every detected multiple-choice row with the
    label, the detection answers and the relabel agents' answers (context, reviewer) as
    sources, each relabel's posterior that the true option is its answer. It assumes
    sources that err independently; agents built on one model share mistakes, and then it
    over-claims: the precision cut uses it only as a bound beside the probes' fit."""
    out = [math.nan] * len(candidates)
    known = [(j, rows.at[sid], rows.letters[rows.at[sid]].index(a))
             for j, (sid, a) in enumerate(candidates)
             if sid in rows.at and a in rows.letters[rows.at[sid]]]
    if not known:
        return out, None
    model = fit_label_model(rows.labels, rows.answers, rows.sizes)
    i = np.array([r for _, r, _ in known])
    right = posterior_of(rows.labels[i], rows.answers[i], rows.sizes[i], model.noise,
                         model.accuracy, np.array([o for _, _, o in known]))
    for (j, _, _), p in zip(known, right, strict=True):
        out[j] = float(p)
    return out, {"noise": model.noise, "accuracy": model.accuracy.tolist(),
                 "rows": len(rows.ids)}
