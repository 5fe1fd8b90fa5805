"""Entropy selection of relabeled samples (pure).

Keep the ``ceil(beta * n)`` relabeled samples with the *lowest* entropy (most certain). Ties
break by input order, so selection is deterministic. A NaN entropy (unknown certainty) sorts
after every number: such samples are kept only when the budget reaches them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def n_keep(n: int, beta: float) -> int:
    """How many of ``n`` relabeled samples survive at fraction ``beta`` (rounded up)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    return min(n, math.ceil(round(beta * n, 9)))


def select_lowest(entropies: Sequence[float], beta: float) -> np.ndarray:
    """Boolean keep-mask over ``entropies``: the lowest ``ceil(beta·n)``, ties by position."""
    e = np.asarray(entropies, dtype=float)
    keep = np.zeros(e.size, dtype=bool)
    k = n_keep(e.size, beta)
    if k:
        key = np.where(np.isnan(e), np.inf, e)
        order = np.lexsort((np.arange(e.size), np.isnan(e), key))
        keep[order[:k]] = True
    return keep


SelectionKey = tuple[bool, float, int]  # (entropy unknown?, entropy, input row)


def selection_key(entropy: float | None, row: int) -> SelectionKey:
    """The order of :func:`select_lowest` as a sortable key: known entropies first, lowest
    first, then input row."""
    unknown = entropy is None or math.isnan(entropy)
    return unknown, math.inf if unknown else float(entropy), int(row)


def cutoff_key(keys: Sequence[Sequence], beta: float) -> SelectionKey | None:
    """The key of the last candidate kept at fraction ``beta`` (None: none kept). A candidate
    is kept exactly when its key is ``<=`` the cutoff — the same set :func:`select_lowest`
    keeps, computable from keys gathered anywhere (one process or many Ray blocks)."""
    k = n_keep(len(keys), beta)
    if not k:
        return None
    unknown = np.array([c[0] for c in keys], dtype=bool)
    ent = np.array([c[1] for c in keys], dtype=float)
    rows = np.array([c[2] for c in keys], dtype=np.int64)
    i = np.lexsort((rows, ent, unknown))[k - 1]
    return bool(unknown[i]), float(ent[i]), int(rows[i])
