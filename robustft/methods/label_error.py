"""How often a confirmed label is itself wrong (pure: arrays in, arrays out).

The precision target's probes are clean rows judged against their own labels; a label both
experts repeated can still be wrong. This module estimates, from the detection answers the run
already has, the probability that each row's given label is wrong.

**Model** (multiple choice; a one-coin latent-class model, Dawid & Skene 1979 with one
accuracy per source): row i has k_i options and an unknown true option T (uniform). The given
label L is right with probability 1 − ρ, else one of the k_i − 1 other options uniformly (ρ:
the file's noise rate). Each detection answer A_j (direct, the first reasoning answer, each
reflection) is right with probability a_j, else one of the other options uniformly; the
sources and the label err independently given T. So, with ``[·]`` an indicator,

    P(T = t, L, A) ∝ ((1 − ρ)·[t = L] + ρ/(k−1)·[t ≠ L])
                     · Π_j (a_j·[A_j = t] + (1 − a_j)/(k−1)·[A_j ≠ t])

and the posterior that the label is wrong is 1 − P(T = L | L, A). For a row whose every
answer is its label (a probe) this is

    w = ρ·Π_j((1 − a_j)/(k−1)) / (ρ·Π_j((1 − a_j)/(k−1)) + (1 − ρ)·Π_j a_j):

a wrong label survives when every source picks that very wrong option. ρ and a_j are fitted
by EM over every detected row (flagged and confirmed: how often the sources agree with each
other and with the label is what tells ρ from the sources' accuracy; three sources and a label
identify the model even where the label says little, e.g. 70% noise on three options, where a
label is right 30% of the time against 33% for a guess). E.g. ρ = 0.7, a = 0.85, k = 4: with
two sources w = 0.0080 (DESIGN §2c's "~1% with four options"), with three 0.00047; k = 3:
0.018 and 0.0016.

**What it assumes**: sources that err independently. Real experts built on one model share
their mistakes (a reflection mostly keeps the reasoning answer; both like the same distractor),
which makes a repeated wrong label more likely than this model says: the estimate is then a
lower bound, and a blind audit's share of wrong labels among confirmed rows (its missed noise
q) replaces it (``precision_cutoff(label_error=...)``). Free-text rows have no options to
count: no estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ITERS = 500  # EM iterations at most
TOL = 1e-10  # stop when no parameter moves more than this


@dataclass
class LabelModel:
    """The fitted model: noise rate ρ, each source's accuracy, and per row P(label wrong)."""

    noise: float
    accuracy: np.ndarray  # (sources,)
    wrong: np.ndarray  # (rows,) posterior probability that the given label is wrong


def _joint(labels: np.ndarray, answers: np.ndarray, options: np.ndarray, noise: float,
           accuracy: np.ndarray) -> np.ndarray:
    """(rows, max options) unnormalised P(T = t, L, A); 0 past a row's options."""
    width = int(options.max())
    t = np.arange(width)[None, :]
    other = (options - 1)[:, None].astype(float)
    joint = np.where(t == labels[:, None], 1 - noise, noise / other)
    for j in range(answers.shape[1]):
        a = answers[:, j][:, None]
        factor = np.where(t == a, accuracy[j], (1 - accuracy[j]) / other)
        joint = joint * np.where(a >= 0, factor, 1.0)
    return np.where(t < options[:, None], joint, 0.0)


def posterior_of(labels: np.ndarray, answers: np.ndarray, options: np.ndarray, noise: float,
                 accuracy: np.ndarray, option: np.ndarray) -> np.ndarray:
    """P(T = ``option`` | label, answers) for each row under given ρ and a_j.
    ``labels``, ``option``: (rows,) option index; ``answers``: (rows, sources) option index,
    −1 where a source gave none; ``options``: (rows,) option count (≥ 2)."""
    joint = _joint(labels, answers, options, noise, accuracy)
    return joint[np.arange(labels.size), option] / joint.sum(axis=1)


def posterior_wrong(labels: np.ndarray, answers: np.ndarray, options: np.ndarray,
                    noise: float, accuracy: np.ndarray) -> np.ndarray:
    """P(the label is wrong | label, answers) for each row under given ρ and a_j (arguments
    as :func:`posterior_of`)."""
    return 1 - posterior_of(labels, answers, options, noise, accuracy, labels)


def fit_label_model(labels, answers, options, noise: float = 0.3,
                    accuracy: float = 0.8) -> LabelModel:
    """ρ and a_j by EM from the starting values (sources better than a guess, so the fit
    does not settle on the mirror solution where every source is mostly wrong)."""
    labels = np.asarray(labels, dtype=int)
    answers = np.asarray(answers, dtype=int).reshape(labels.size, -1)
    options = np.asarray(options, dtype=int)
    acc = np.full(answers.shape[1], accuracy, dtype=float)
    rows = np.arange(labels.size)
    present = answers >= 0
    for _ in range(ITERS):
        joint = _joint(labels, answers, options, noise, acc)
        post = joint / joint.sum(axis=1, keepdims=True)
        new_noise = float(1 - post[rows, labels].mean())
        new_acc = np.array([post[rows[present[:, j]], answers[present[:, j], j]].mean()
                            if present[:, j].any() else acc[j]
                            for j in range(answers.shape[1])])
        moved = max(abs(new_noise - noise), float(np.abs(new_acc - acc).max(initial=0)))
        noise, acc = new_noise, new_acc
        if moved < TOL:
            break
    return LabelModel(noise, acc, posterior_wrong(labels, answers, options, noise, acc))
