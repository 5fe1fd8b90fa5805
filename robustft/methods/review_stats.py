"""Agreement between people and agents (pure: rows in, counts and shares out).

For every review: the agents' fate, their uncertainty (RobustFT entropy, or 1 − CLEAR
confidence), the action taken and whether it is stale. The shares of accepted, restored,
edited and dropped decisions by fate and by uncertainty bucket tell a user how far to trust
the agents on the samples nobody reviewed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from robustft.schemas import REVIEW_ACTIONS as ACTIONS

# uncertainty buckets (nats of entropy; 1 − confidence for CLEAR): upper edges
BUCKETS = ((0.2, "< 0.2"), (0.5, "0.2–0.5"), (0.9, "0.5–0.9"), (math.inf, "≥ 0.9"))


def bucket(uncertainty: float | None) -> str:
    if uncertainty is None or not math.isfinite(uncertainty):
        return "none"
    return next(name for edge, name in BUCKETS if uncertainty < edge)


def _group(actions: list[str]) -> dict[str, float | int]:
    n = len(actions)
    return {"reviews": n, **{a: round(actions.count(a) / n, 4) for a in ACTIONS}}


def review_stats(rows: Iterable[tuple[str | None, float | None, str, bool]],
                 queue: int) -> dict:
    """``rows``: (agents' fate, uncertainty, action, stale) per review; ``queue``: samples in
    the review queue. Stale reviews are counted apart and left out of the shares."""
    live: list[tuple[str, float | None, str]] = []
    stale = 0
    for fate, unc, action, is_stale in rows:
        if is_stale:
            stale += 1
        else:
            live.append((fate or "pending", unc, action))
    by_fate: dict[str, list[str]] = {}
    by_bucket: dict[str, list[str]] = {}
    for fate, unc, action in live:
        by_fate.setdefault(fate, []).append(action)
        by_bucket.setdefault(bucket(unc), []).append(action)
    order = [name for _, name in BUCKETS] + ["none"]
    return {"reviews": len(live) + stale, "stale": stale, "queue": queue,
            "actions": {a: sum(1 for *_, x in live if x == a) for a in ACTIONS},
            "agreement": round(sum(1 for *_, x in live if x == "accept") / len(live), 4)
            if live else None,
            "by_fate": {f: _group(a) for f, a in sorted(by_fate.items())},
            "by_uncertainty": {b: _group(by_bucket[b]) for b in order if b in by_bucket}}
