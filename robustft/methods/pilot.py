"""``curate --pilot N``, the pure part: which rows a pilot runs, and its figures projected to
the whole file.

Calls of the per-row stages grow with the rows; the steps that run for a capped set of rows
(the precision target's probes, CLEAR's decoys, the canaries) grow with that set, whose size
at the whole file is known from the config. A pilot plants as many canaries as the whole
run will, so their calls project one to one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from robustft.methods.canaries import wilson_interval

PER_ROW = ("detected", "relabeled", "scored", "corrected")  # stages of the rows themselves


def pilot_ids(ids: Sequence[str], n: int, seed: int) -> set[str]:
    """A seeded random draw of ``n`` of ``ids`` (all when fewer): the rows whose hash of
    (seed, id) is lowest, so the draw of n is part of the draw of n + 1."""
    def key(sid: str) -> bytes:
        return hashlib.sha256(f"pilot|{seed}|{sid}".encode()).digest()
    return set(sorted(ids, key=key)[:n])


def unit_scale(pilot_units: int, full_units: float) -> float:
    """How a capped step's calls grow: full-run units over the pilot's (1 with none)."""
    return full_units / pilot_units if pilot_units else 1.0


def project(rows: Iterable[tuple[str, int, int, int, float]], row_scale: float,
            scales: Mapping[str, float]) -> dict:
    """``rows``: (stage, calls, prompt tokens, completion tokens, cost) of the pilot. Each
    stage's figures times ``scales[stage]`` (default ``row_scale``: whole-file rows over
    pilot rows); returns the totals and the projected calls per stage."""
    out = {"calls": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0, "cost": 0.0,
           "calls_by_stage": {}}
    for stage, calls, pt, ct, cost in rows:
        f = scales.get(stage, row_scale)
        out["calls"] += calls * f
        out["prompt_tokens"] += pt * f
        out["completion_tokens"] += ct * f
        out["cost"] += cost * f
        out["calls_by_stage"][stage] = out["calls_by_stage"].get(stage, 0.0) + calls * f
    return out


def share(k: int, n: int) -> dict:
    """k of n as a share with its 95% Wilson interval."""
    ci = wilson_interval(k, n)
    return {"k": k, "n": n, "share": k / n if n else None,
            "ci95": list(ci) if ci is not None else None}


def describe_pilot(r: dict) -> list[str]:
    """Readable lines of a pilot report (see :func:`robustft.graph.pilot.run_pilot`)."""
    def fig(s: dict | None) -> str:
        if not s or not s["n"]:
            return "n/a"
        lo, hi = s["ci95"]
        return f"{s['share']:.3f} (95% CI {lo:.3f}–{hi:.3f}; {s['k']}/{s['n']})"

    p = r["projected"]
    cost = f"; cost {p['cost']:.4f}" if r.get("priced") else ""
    lines = [f"pilot: {r['rows']} random rows of {r['of']} (seed {r['seed']}), run end to end "
             f"in {r['dir']}",
             f"  estimated noise rate: {fig(r['noise'])} (rows whose relabel differs from the "
             "given response; flagged rows " + fig(r["flagged"]) + ")",
             f"  detection recall (canaries): {fig(r['canary_recall'])} (an upper bound: "
             "planted errors are easier than real ones)",
             f"  the run would keep: {fig(r['kept'])} of the rows",
             f"  projected to all {r['of']} rows: {p['calls']:,.0f} calls, "
             f"{p['prompt_tokens'] + p['completion_tokens']:,.0f} tokens{cost}, about "
             f"{r['projected_s']:,.0f} s at concurrency {r['concurrency']} (the pilot took "
             f"{r['elapsed_s']:.0f} s: its stages scaled, start-up as it was)"]
    return lines


def pilot_rows(samples: list, errors: list, n: int, seed: int) -> tuple[list, list, dict]:
    """The pilot's share of the input: the valid samples and invalid rows among a seeded
    draw of ``n`` rows (:func:`pilot_ids`), and what to record about the draw."""
    drawn = pilot_ids([r.id for r in [*samples, *errors]], n, seed)
    return ([s for s in samples if s.id in drawn], [e for e in errors if e.id in drawn],
            {"requested": n, "rows": len(drawn), "of": len(samples) + len(errors),
             "seed": seed})
