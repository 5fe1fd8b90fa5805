"""What the trace viewer and the HTML report show, as JSON-ready dicts read from a run store.

Every list is paginated in SQL (LIMIT/OFFSET over indexed columns), so a page of a 100k-sample
run costs a page's worth of work, not the run's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from robustft.store.runstore import SORTS, RunStore

FILTERS = ("fate", "changed", "errors", "q")


def histogram(values: list[float], bins: int = 20) -> dict[str, list[float]]:
    """Counts over ``bins`` equal-width bins between the min and max of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"edges": [], "counts": []}
    hi = v.max() if v.max() > v.min() else v.min() + 1e-9
    counts, edges = np.histogram(v, bins=bins, range=(v.min(), hi))
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts.tolist()}


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def summary(store: RunStore) -> dict[str, Any]:
    """Counts by fate, label changes, calls and tokens, histograms, config and prompt hashes."""
    totals = store.totals()
    ent, conf = store.entropies(), store.confidences()
    prompts = _read(store.dir / "prompts.json")
    return {
        "run": str(store.dir), "method": store.get_meta("method") or "robustft",
        "input": store.get_meta("input_path"), **totals,
        "entropy_hist": histogram(ent), "confidence_hist": histogram(conf),
        "gamma": store.get_meta("gamma"),
        "config": _read(store.dir / "config.yaml") or "",
        "prompts": json.loads(prompts) if prompts else {},
    }


def samples_page(store: RunStore, filters: dict[str, str], sort: str = "row",
                 order: str = "asc", page: int = 1, size: int = 50) -> dict[str, Any]:
    """One page of the sample table plus the total matching count."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {sorted(SORTS)}")
    size, page = max(1, min(size, 500)), max(1, page)
    total, rows = store.page(filters, sort, order == "desc", (page - 1) * size, size)
    return {"total": total, "page": page, "size": size, "sort": sort,
            "order": "desc" if order == "desc" else "asc", "rows": rows}


def sample_detail(store: RunStore, sid: str) -> dict[str, Any] | None:
    """The whole record of one sample with its agent calls in order (the timeline)."""
    r = store.record(sid)
    if r is None:
        return None
    return {**r, "calls": [{"stage": stage, **c.model_dump()} for stage, c in store.calls(sid)]}


def changed_samples(store: RunStore, limit: int = 5000) -> list[dict[str, Any]]:
    """Samples whose final label differs from the given one (for the static report)."""
    return [d for d in (sample_detail(store, i) for i in store.changed_ids(limit))
            if d is not None]
