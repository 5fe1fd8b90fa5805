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

from robustft.errors import UsageError
from robustft.methods.diff import changed_words, word_diff
from robustft.pipeline.audit import run_audit_summary
from robustft.schemas import Fate
from robustft.store.reviews import QUEUE_FATES, UNSURE_FATES, ReviewStore
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
        "fate_order": [str(f) for f in Fate], "queue_fates": [str(f) for f in QUEUE_FATES],
        "config": _read(store.dir / "config.yaml") or "",
        "prompts": json.loads(prompts) if prompts else {},
        "audit": run_audit_summary(store.dir, store),  # the blind audit's estimates (or None)
    }


def samples_page(store: RunStore, filters: dict[str, str], sort: str = "row",
                 order: str = "asc", page: int = 1, size: int = 50) -> dict[str, Any]:
    """One page of the sample table plus the total matching count."""
    if sort not in SORTS:
        raise UsageError(f"sort must be one of {sorted(SORTS)}")
    size, page = max(1, min(size, 500)), max(1, page)
    total, rows = store.page(filters, sort, order == "desc", (page - 1) * size, size)
    return {"total": total, "page": page, "size": size, "sort": sort,
            "order": "desc" if order == "desc" else "asc", "rows": rows}


def sample_detail(store: RunStore, sid: str,
                  reviews: ReviewStore | None = None) -> dict[str, Any] | None:
    """The whole record of one sample with its agent calls in order (the timeline) and its
    review (with whether it is stale and whether the sample is in the review queue)."""
    r = store.record(sid)
    if r is None:
        return None
    review = reviews.get(sid) if reviews is not None else None
    sample = r.get("sample") or {}
    free = bool(sample) and not sample.get("options")
    original = r.get("original") if r.get("original") is not None else sample.get("label")
    return {**r, "calls": [{"stage": stage, **c.model_dump()} for stage, c in store.calls(sid)],
            "reviewable": r.get("fate") in QUEUE_FATES,
            "review": review.as_dict(r.get("fate"), r.get("final")) if review else None,
            "diff": response_diff(original, r.get("final")) if free else None,
            "review_diff": response_diff(original, review.response)
            if free and review is not None and review.action == "edit" else None}


def response_diff(old: str | None, new: str | None) -> dict[str, Any] | None:
    """A free-text response ``new`` against the original ``old`` (None: no change): the word
    diff ``ops`` ([kind, text] runs: equal, delete, insert), each change as [removed,
    inserted] text, and ``words``: how many words changed (:func:`changed_words`)."""
    if old is None or new is None or old == new:
        return None
    ops = word_diff(old, new)
    changes: list[list[str]] = []
    for i, (kind, text) in enumerate(ops):
        if kind == "delete":
            changes.append([text.strip(), ""])
        elif kind == "insert":
            if i and ops[i - 1][0] == "delete":
                changes[-1][1] = text.strip()
            else:
                changes.append(["", text.strip()])
    changes = [c for c in changes if any(c)]  # a whitespace-only run is no change
    return {"ops": [list(op) for op in ops], "changes": changes,
            "words": changed_words(old, new)}


def report_samples(store: RunStore, limit: int = 5000) -> list[dict[str, Any]]:
    """Samples whose final label differs from the given one, those the judges were unsure of
    or the correction confirmed, then reviewed ones (for the static report)."""
    reviews = ReviewStore(store.dir) if ReviewStore.exists(store.dir) else None
    try:
        ids = list(dict.fromkeys([*store.changed_ids(limit),
                                  *store.ids_with_fate((*UNSURE_FATES, Fate.CONFIRMED), limit),
                                  *(reviews.all() if reviews else {})]))[:limit]
        return [d for d in (sample_detail(store, i, reviews) for i in ids) if d is not None]
    finally:
        if reviews is not None:
            reviews.close()


def queue_entry(ids: list[str], reviewed: set[str], unreviewed: bool, index: int,
                method: str) -> dict[str, Any]:
    """The ``index``-th sample of the review queue ``ids`` (only those without a review when
    ``unreviewed``), with the queue's size and how many of it are reviewed."""
    index = max(index, 0)
    todo = [i for i in ids if i not in reviewed] if unreviewed else ids
    return {"total": len(ids), "reviewed": sum(i in reviewed for i in ids), "index": index,
            "id": todo[index] if index < len(todo) else None,
            "fates": [str(f) for f in QUEUE_FATES],
            "order": "unsure first, then " + ("confidence, lowest first" if method == "clear"
                                              else "entropy, highest first")}


def save_review(store: RunStore, reviews: ReviewStore, req: dict[str, Any],
                reviewer: str) -> dict[str, Any]:
    """Validate and store one review request ``{id, action, response, note, base_version}``
    against the sample's current decision; returns the stored review."""
    r = store.record(str(req["id"]))
    if r is None:
        raise UsageError(f"no sample with id {req['id']!r}")
    if r.get("fate") not in QUEUE_FATES:
        raise UsageError(f"sample {r['id']} is {r.get('fate') or 'unfinished'}: only the "
                         f"samples the agents flagged or failed on are reviewed "
                         f"({', '.join(QUEUE_FATES)})")
    sample, action = r.get("sample") or {}, req.get("action")
    response = None
    if action == "restore":
        response = sample.get("label")
    elif action == "edit":
        response = str(req.get("response") or "").strip()
        letters = [chr(65 + i) for i in range(len(sample.get("options") or []))]
        if letters and response.upper() not in letters:
            raise UsageError(f"an edited answer must be one of the options {letters}")
        response = response.upper() if letters else response
    note = str(req.get("note") or "")[:2000] or None
    review = reviews.save(r["id"], action, response, note, reviewer[:100], r.get("fate"),
                          r.get("final"), int(req.get("base_version") or 0))
    return review.as_dict(r.get("fate"), r.get("final"))
