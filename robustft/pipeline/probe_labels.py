"""What the precision target needs beyond entropies: how many of the probes' labels are
themselves wrong (a latent-class fit over every detected row) and whether the two relabel
agents agreed (the strata the accuracy fit may split on)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from robustft.config import Config
from robustft.methods.label_error import fit_label_model
from robustft.methods.matching import answers_match
from robustft.schemas import Stage, Verdict

ROLES = ("direct", "reasoning", "reflection")


def agents_agree(is_mc: bool, context: str | None, reviewer: str | None) -> bool:
    """Whether the two relabel agents (context, reviewer) gave the same answer (letters;
    token F1 ≥ 0.8 for free text): on a relabel and on a probe alike."""
    return answers_match(context, reviewer, is_mc)


def probe_label_error(config: Config, blocks: Iterable[Any], probes: list[dict[str, Any]]
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
    ``blocks``: every block of the run (a store and its typed records), in input order."""
    width = 2 + config.detect.reflection_rounds
    labels, answers, sizes, ids, clean = [], [], [], [], []
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
            row = [-1] * width
            for j, a in enumerate(given):
                row[j] = s.letters.index(a) if a in s.letters else -1
            if rec.verdict == Verdict.CLEAN:
                clean.append(len(ids))
            ids.append(s.id)
            labels.append(s.letters.index(s.label))
            answers.append(row)
            sizes.append(len(s.letters))
    at = {sid: i for i, sid in enumerate(ids)}
    chance = [1 / (sizes[at[p["id"]]] - 1) if p["id"] in at else 0.0 for p in probes]
    if not ids or not probes:
        return 0.0, chance, None
    model = fit_label_model(labels, np.array(answers), sizes)
    wrong = [float(model.wrong[at[p["id"]]]) if p["id"] in at else 0.0 for p in probes]
    meta = {"noise": model.noise, "accuracy": model.accuracy.tolist(), "rows": len(ids),
            "probes": float(np.mean(wrong)),
            "clean": float(model.wrong[clean].mean()) if clean else None}
    return float(np.mean(wrong)), chance, meta
