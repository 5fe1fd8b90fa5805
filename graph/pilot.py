"""``curate --pilot N``: N random rows (seeded by ``audit.seed``; canaries as many as the
whole run plants) curated end to end in ``RUN/pilot``, with the request cache the whole run
uses (``RUN/cache.sqlite``, or ``--cache``), then its figures projected to the whole file.

The run directory ``RUN`` is claimed for the input and method first, so the full run's
identity checks hold; ``RUN/pilot`` is a run directory of its own (its rows are a subset), and
the full run reads nothing from it: it only finds the pilot's calls in the cache.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from robustft.config import Config, RunOptions, prices_of
from robustft.graph.runner import curate
from robustft.methods.canaries import canary_count
from robustft.methods.cost import call_cost
from robustft.methods.matching import answers_match, exact_match
from robustft.methods.pilot import project, share, unit_scale
from robustft.pipeline.contract import KEPT, Fate
from robustft.pipeline.fates import final_by
from robustft.pipeline.setup import Reporter, claim_run_dir, input_digest
from robustft.store.canaries import STAGE as CANARY
from robustft.store.canaries import CanaryStore, calls_by_stage
from robustft.store.lock import lock_run_dir
from robustft.store.runstore import RunStore

FLAGGED = (Fate.RELABELED_KEPT, Fate.RELABELED_DROPPED, Fate.CONFIRMED)


INDEXING = "indexing "  # the note RobustFT gives at its barrier (graph/robustft_run.py)


class TimedReporter:
    """Passes progress on to ``inner`` and notes when each stage starts: a stage lasts until
    the next one starts (or the run ends). RobustFT's barrier counts as a stage of its own
    (``index``): waiting for the embedder to load is start-up, whatever the rows."""

    def __init__(self, inner: Reporter):
        self.inner, self.t0, self.starts = inner, time.perf_counter(), []

    def start(self, stage: str, total: int) -> None:
        self.starts.append((stage, time.perf_counter() - self.t0))
        self.inner.start(stage, total)

    def advance(self, stage: str) -> None:
        self.inner.advance(stage)

    def note(self, text: str) -> None:
        if text.startswith(INDEXING):  # RobustFT's barrier: the embedder's load, the index
            self.starts.append(("index", time.perf_counter() - self.t0))
        self.inner.note(text)

    def spans(self, end_s: float) -> dict[str, float]:
        """Seconds per stage (the last one until ``end_s``); ``""``: before the first."""
        if not self.starts:
            return {"": end_s}
        out = {"": self.starts[0][1]}
        ends = [t for _, t in self.starts[1:]] + [end_s]
        for (stage, t), until in zip(self.starts, ends, strict=True):
            out[stage] = out.get(stage, 0.0) + until - t
        return out


def pilot_dir(run_dir: Path) -> Path:
    return run_dir / "pilot"


def _claim(run_dir: Path, input_path: Path, method: str) -> None:
    store = RunStore(run_dir)
    try:
        claim_run_dir(store, input_digest(input_path), method)
    finally:
        store.close()


def _fresh(where: Path, n: int, seed: int, rep: Reporter) -> None:
    """An earlier pilot of another size or seed in ``where`` is removed (its calls stay in
    the cache, so running it again is free)."""
    if not (where / "run.sqlite").is_file():
        return
    store = RunStore.open_existing(where)
    old = json.loads(store.get_meta("pilot") or "{}")
    store.close()
    if (old.get("requested"), old.get("seed")) != (n, seed):
        rep.note(f"{where}: replacing the earlier pilot ({old.get('requested')} rows, seed "
                 f"{old.get('seed')}); its calls stay in the cache")
        shutil.rmtree(where)


def _relabel(r: dict[str, Any], config: Config, method: str) -> str | None:
    return r.get("candidate") if method == "clear" else r.get(f"{final_by(config)}_answer")


def _changed(r: dict[str, Any], config: Config, method: str) -> bool:
    """The agents' relabel differs from the given response."""
    s, new = r.get("sample") or {}, _relabel(r, config, method)
    if new is None or not s:
        return False
    if s.get("long_form"):
        return not exact_match(new, s["label"], False)
    return not answers_match(new, s["label"], bool(s.get("options")),
                             config.detect.fuzzy_threshold)


def pilot_report(store: RunStore, config: Config, method: str, summary: dict[str, Any],
                 spans: dict[str, float]) -> dict[str, Any]:
    """The pilot's estimates and its calls, tokens, cost and time projected to the file."""
    drawn = json.loads(store.get_meta("pilot"))
    rows, total = drawn["rows"], drawn["of"]
    ratio = total / max(rows, 1)
    fates = summary["fates"]
    done = [r for r in store.records() if r.get("fate") not in (Fate.ERROR, None)]
    prices = prices_of(config)
    stage_rows = [(st, n, pt, ct, call_cost(prices, model, pt, ct))
                  for st, _, model, n, pt, ct in calls_by_stage(store)]
    n_probes, n_decoys = len(store.probes()), len(store.probes("decoy"))
    canaries = [c for c in CanaryStore(store).all().values() if c["stage"] == "done"]
    a, sel = config.audit, config.selection
    scales = {"probe": unit_scale(n_probes, min(sel.probes, n_probes * ratio)),
              "decoy": unit_scale(n_decoys, min(config.clear.decoys, n_decoys * ratio)),
              CANARY: unit_scale(len(canaries), canary_count(total, a.canaries,
                                                             a.max_canaries))}
    inv = summary.get("this_invocation") or {}
    sent, path = inv.get("endpoint_calls", 0), store.dir / "pilot.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    if earlier.get("sent", -1) > sent:  # a rerun served from the cache: keep the first time
        spans, sent = earlier["stage_s"], earlier["sent"]
    # time: set-up as it is; each stage as its calls grow (the row stages with the rows)
    by_stage = {"canaries": scales[CANARY], "decoys": scales["decoy"], "": 1.0, "index": 1.0}
    report = {
        "rows": rows, "of": total, "seed": drawn["seed"], "dir": str(store.dir),
        "noise": share(sum(_changed(r, config, method) for r in done), len(done)),
        "flagged": share(sum(fates.get(f, 0) for f in FLAGGED), len(done)),
        "kept": share(sum(fates.get(f, 0) for f in KEPT), rows),
        "canary_recall": (summary.get("canaries") or {}).get("recall"),
        "calls": summary["calls"], "projected": project(stage_rows, ratio, scales),
        "priced": bool(prices), "elapsed_s": sum(spans.values()), "stage_s": spans,
        "projected_s": sum(t * by_stage.get(st, ratio) for st, t in spans.items()),
        "concurrency": config.concurrency, "sent": sent}
    path.write_text(json.dumps(report, indent=1))
    return report


async def run_pilot(config: Config, input_path: str | Path, run_dir: str | Path,
                    reporter: Reporter, options: RunOptions) -> dict[str, Any]:
    """Curate ``options.pilot`` random rows in ``RUN/pilot`` with ``RUN``'s cache; returns
    the pilot's summary with its report under ``pilot``."""
    input_path, run_dir = Path(input_path), Path(run_dir)
    n, where = options.pilot, pilot_dir(run_dir)
    with lock_run_dir(run_dir):  # the whole run's directory: one writer at a time
        _claim(run_dir, input_path, options.method)
        _fresh(where, n, config.audit.seed, reporter)
        timed = TimedReporter(reporter)
        summary = await curate(config, input_path, where, timed,
                               replace(options, cache_path=options.cache_path
                                       or run_dir / "cache.sqlite"))
        spans = timed.spans(time.perf_counter() - timed.t0)
    store = RunStore.open_existing(where)
    try:
        return {**summary, "pilot": pilot_report(store, config, options.method, summary,
                                                 spans)}
    finally:
        store.close()
