"""The blind human audit sample of a run and the estimates it gives (DESIGN §2c).

Strata: the rows the checker flagged (fates relabeled-kept, relabeled-dropped, confirmed) and
those it did not (clean, unsure, unsure-dropped); error rows are in neither. The sample is a
seeded random draw of ``audit.sample_flagged`` and ``audit.sample_unflagged`` rows of a
finished run, stored in ``RUN/reviews.sqlite`` the first time the viewer or ``robustft
summary`` needs it; the same run and config draw the same rows. Rows are shown in a seeded
order that mixes the strata, so a row's place says nothing of the agents' verdict.

:func:`audit_summary` turns the verdicts into the estimates of
:mod:`robustft.methods.estimates`: detection precision, missed noise, recall, noise rate and
the curated set's accuracy, with 95% intervals. The curated set has three parts, each
weighted by its size in the whole run: unflagged rows kept as they were and flagged rows kept
as they were (confirmed, or relabeled to the same response), both judged on their original
response, and rows the agents changed and kept, judged on the final response (the audit's
second question). A part without any judged row borrows from its neighbour (noted): see
:func:`_parts`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from robustft.config import AuditConfig, load_config
from robustft.methods.estimates import (
    Estimate,
    Part,
    curated_accuracy,
    detection_estimates,
    share,
)
from robustft.schemas import KEPT, Fate
from robustft.store.audit import STRATA, AuditStore
from robustft.store.runstore import RunStore

FLAGGED = (Fate.RELABELED_KEPT, Fate.RELABELED_DROPPED, Fate.CONFIRMED)
UNFLAGGED = (Fate.CLEAN, Fate.UNSURE, Fate.UNSURE_DROPPED)
PARTS = ("kept unflagged", "kept flagged, unchanged", "kept changed")


def stratum(fate: str | None) -> str | None:
    """flagged, unflagged, or None (an error row or an unfinished one)."""
    return "flagged" if fate in FLAGGED else "unflagged" if fate in UNFLAGGED else None


def part(fate: str | None, has_final: bool, changed: bool) -> str | None:
    """Which part of the curated set a row is in (None: not kept); ``changed``: its final
    response differs from the original."""
    if fate not in KEPT or not has_final:
        return None
    if changed:
        return "kept changed"
    return "kept unflagged" if fate in UNFLAGGED else "kept flagged, unchanged"


def audit_config(run_dir: str | Path) -> AuditConfig:
    """The ``audit`` section of the run's config snapshot (defaults without one)."""
    path = Path(run_dir) / "config.yaml"
    return load_config(path if path.is_file() else None).audit


def draw(ids: dict[str, list[str]], sizes: dict[str, int], seed: int,
         taken: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(sample id, stratum) rows to add so that each stratum has ``sizes[stratum]`` drawn rows
    (``taken``: those drawn already): each stratum's ids (input order) in a permutation seeded
    by (``seed``, stratum), the first ones not taken; then the new rows in a seeded order."""
    picks: list[tuple[str, str]] = []
    before = set().union(*taken.values()) if taken else set()
    for k, name in enumerate(STRATA):
        pool = ids.get(name, [])
        need = sizes[name] - len(taken.get(name, ()))
        if need <= 0:
            continue
        perm = np.random.default_rng([seed, k]).permutation(len(pool))
        picks += [(sid, name) for sid in (pool[i] for i in perm) if sid not in before][:need]
    order = np.random.default_rng([seed, len(STRATA), len(before)]).permutation(len(picks))
    return [picks[i] for i in order]


def population(store: RunStore) -> tuple[dict[str, list[str]], int]:
    """(ids of each stratum in input order, rows without a fate yet)."""
    ids: dict[str, list[str]] = {s: [] for s in STRATA}
    pending = 0
    for sid, fate in store.db.execute("SELECT id, fate FROM samples ORDER BY row"):
        if fate is None:
            pending += 1
        elif (s := stratum(fate)) is not None:
            ids[s].append(sid)
    return ids, pending


def ensure_sample(store: RunStore, audit: AuditStore, cfg: AuditConfig) -> str | None:
    """Draw the audit sample (or extend it to the configured sizes) when needed; returns why
    it was not drawn, or None. A sample with verdicts is never redrawn: a changed seed is
    noted in the summary instead."""
    entries, meta = audit.entries(), audit.meta()
    if entries and meta.get("seed") != cfg.seed:
        if any(e.verdict for e in entries):
            return None
        audit.clear()
        entries = []
    ids, pending = population(store)
    if pending:
        return (f"the run is not finished ({pending} row(s) without a fate): the audit sample "
                "is drawn from a finished run")
    taken: dict[str, set[str]] = {s: set() for s in STRATA}
    for e in entries:
        taken[e.stratum].add(e.sample_id)
    sizes = {"flagged": cfg.sample_flagged, "unflagged": cfg.sample_unflagged}
    new = draw(ids, sizes, cfg.seed, taken)
    if new or not entries:
        audit.add(new, {"seed": cfg.seed, **sizes})
    return None


def _rows(store: RunStore, ids: list[str]) -> dict[str, tuple[str | None, str | None,
                                                              str | None]]:
    """id -> (fate, original, final) of the given samples."""
    out = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        out.update({sid: (f, o, fin) for sid, f, o, fin in store.db.execute(
            f"SELECT id, fate, original, final FROM samples WHERE id IN "
            f"({','.join('?' * len(chunk))})", chunk)})
    return out


def _counts(store: RunStore) -> tuple[Counter, Counter]:
    """(rows per stratum (None: not covered), kept rows per part) of the whole run."""
    strata: Counter = Counter()
    parts: Counter = Counter()
    for fate, has_final, changed, n in store.db.execute(
            "SELECT fate, final IS NOT NULL, final IS NOT NULL AND final IS NOT original, "
            "COUNT(*) FROM samples GROUP BY 1, 2, 3"):
        strata[stratum(fate)] += n
        parts[part(fate, bool(has_final), bool(changed))] += n
    return strata, parts


def _parts(kept: Counter, judged: dict[str, Counter], unflagged: Counter
           ) -> tuple[list[Part], list[dict[str, Any]], list[str]]:
    """The curated set's parts for :func:`curated_accuracy` (and as reported, with notes).
    A part with kept rows but no judged one borrows: the kept unflagged rows, the share of
    right original responses among all judged unflagged rows; a part of the kept flagged
    rows, the share of right final responses among the other part's judged rows (both are
    rows the agents flagged and kept)."""
    flagged = judged["kept flagged, unchanged"] + judged["kept changed"]
    borrow = {"kept unflagged": (unflagged, "right original responses among all judged "
                                            "unflagged rows"),
              "kept flagged, unchanged": (flagged, "right final responses among the judged "
                                                   "kept flagged rows"),
              "kept changed": (flagged, "right final responses among the judged kept "
                                        "flagged rows")}
    parts, out, notes = [], [], []
    for name in PARTS:
        c, borrowed = judged[name], False
        if not c["right"] + c["wrong"] and kept[name]:
            c, why = borrow[name]
            borrowed = True
            notes.append(f"no judged row among the {kept[name]} {name} rows yet: their "
                         f"accuracy is taken as the share of {why}")
        right, n = c["right"], c["right"] + c["wrong"]
        parts.append(Part(kept[name], right, n))
        out.append({"part": name, "kept": kept[name], "right": right, "judged": n,
                    "borrowed": borrowed})
    return parts, out, notes


def audit_summary(store: RunStore, audit: AuditStore, seed: int = 0) -> dict[str, Any] | None:
    """The audit's progress and estimates (None: no sample drawn); ``seed`` seeds the
    bootstrap."""
    entries = audit.entries()
    if not entries:
        return None
    rows = _rows(store, [e.sample_id for e in entries])
    strata, kept = _counts(store)
    tally = {s: Counter() for s in STRATA}
    judged_parts = {p: Counter() for p in PARTS}
    moved = stale = asked = 0
    for e in entries:
        fate, original, final = rows.get(e.sample_id, (None, None, None))
        now = stratum(fate)
        moved += now != e.stratum
        if now is None:
            continue
        tally[now]["drawn"] += 1
        if e.verdict is None:
            continue
        tally[now][e.verdict] += 1
        where = part(fate, final is not None, final != original)
        if where == "kept changed":
            asked += 1
            if e.final_verdict is not None and e.judged_final != final:
                stale += 1
            elif e.final_verdict in ("right", "wrong"):
                judged_parts[where][e.final_verdict] += 1
        elif where is not None and e.verdict in ("right", "wrong"):
            judged_parts[where][e.verdict] += 1
    n_f, n_u = strata["flagged"], strata["unflagged"]
    t_f, t_u = tally["flagged"], tally["unflagged"]
    est = detection_estimates(n_f, n_u, t_f["wrong"], t_f["wrong"] + t_f["right"],
                              t_u["wrong"], t_u["wrong"] + t_u["right"], seed=seed)
    parts_in, parts_out, notes = _parts(kept, judged_parts, t_u)
    meta = audit.meta()
    if moved:
        notes.append(f"{moved} audited row(s) changed stratum since the draw (the run was "
                     "curated again): counted where they are now")
    if stale:
        notes.append(f"{stale} verdict(s) on a final response are stale (a rerun changed "
                     "the response): not counted; judge them again")
    return {
        "size": len(entries), "judged": sum(e.verdict is not None for e in entries),
        "drawn": meta,
        "strata": {s: {"rows": strata[s], **{k: tally[s][k] for k in
                                             ("drawn", "right", "wrong", "unsure")}}
                   for s in STRATA},
        "not_covered": strata[None], "kept": sum(kept[p] for p in PARTS),
        "finals": {"asked": asked, "judged": sum(judged_parts["kept changed"].values()),
                   "stale": stale},
        "parts": parts_out,
        "estimates": {**{k: v.as_dict() for k, v in est.items()},
                      "curated_accuracy": curated_accuracy(parts_in, seed=seed).as_dict()},
        "notes": notes,
    }


def summarize(store: RunStore, audit: AuditStore, cfg: AuditConfig) -> dict[str, Any] | None:
    """:func:`audit_summary` with a note when the sample was drawn with another seed."""
    block = audit_summary(store, audit, cfg.seed)
    if block is not None and block["drawn"].get("seed") != cfg.seed:
        block["notes"].append(f"drawn with seed {block['drawn'].get('seed')}; the config "
                              f"says {cfg.seed}: kept, as it has verdicts")
    return block


def run_audit_summary(run_dir: str | Path, store: RunStore, draw_sample: bool = False
                      ) -> dict[str, Any] | None:
    """The audit block of a run (None: no audit sample, and none drawn). ``draw_sample``
    draws it first when missing (this writes ``RUN/reviews.sqlite``); otherwise read only
    where that file exists. Not drawn (an unfinished run): ``{"not_drawn": why}``."""
    audit = AuditStore(run_dir) if draw_sample else AuditStore.existing(run_dir)
    if audit is None:
        return None
    try:
        cfg = audit_config(run_dir)
        why = ensure_sample(store, audit, cfg) if draw_sample else None
        block = summarize(store, audit, cfg)
        return block if block is not None or why is None else {"not_drawn": why}
    finally:
        audit.close()


def missed_noise(run_dir: str | Path) -> Estimate | None:
    """The audit's share of wrong responses among the rows the checker did not flag (q),
    with its 95% interval; None without an audit sample or a judged unflagged row."""
    store = RunStore.reader(run_dir)
    try:
        block = run_audit_summary(run_dir, store)
    finally:
        store.close()
    if not block or "strata" not in block:
        return None
    u = block["strata"]["unflagged"]
    q = share(u["wrong"], u["wrong"] + u["right"])
    return q if q.value is not None else None
