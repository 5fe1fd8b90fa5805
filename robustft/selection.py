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
