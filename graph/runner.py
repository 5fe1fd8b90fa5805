"""Dataset-level stages around the per-sample graph, under one concurrency bound.

detect all → index clean → relabel noisy → select → write. Each stage is a barrier; inside a
stage every sample runs its own invocation of the graph compiled once (one ``Send`` fan-out over
the whole dataset scales superlinearly). Each finished sample is saved at once, so a rerun on
the same run directory skips finished samples.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from agents.base import Deps
from robustft.cache import RequestCache
from robustft.client import Budget, BudgetExceeded, LLMClient
from robustft.config import ROLES, Config, RunOptions, dump_config, resolved_endpoint
from robustft.io import load_samples
from robustft.outputs import write_outputs
from robustft.prompts import load_prompts
from robustft.retrieval import CleanIndex, Embedder
from robustft.runstore import RunStore
from robustft.schemas import Sample
from robustft.selection import select_lowest

from .robustft import build_robustft_graph
from .state import SampleState

log = logging.getLogger("robustft")

_DETECTED = ("experts", "reasoning_text", "reasoning_answer", "verdict", "verdict_reason")
_KEEP = (*_DETECTED, "neighbours", "context_answer", "reviewer_answer", "reviewer_reasoning",
         "entropy", "entropy_source", "answer_distribution", "errors")


class Reporter(Protocol):
    def start(self, stage: str, total: int) -> None: ...
    def advance(self, stage: str) -> None: ...
    def note(self, text: str) -> None: ...


class _Quiet:
    def start(self, stage: str, total: int) -> None: ...
    def advance(self, stage: str) -> None: ...
    def note(self, text: str) -> None:
        log.info(text)


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready part of a state (calls are stored in their own table)."""
    out = {k: state[k] for k in _KEEP if k in state}
    if "neighbours" in out:
        out["neighbours"] = [n.model_dump() for n in out["neighbours"]]
    return out


async def run_stage(graph, states: Iterable[SampleState], deps: Deps,
                    on_done: Callable[[SampleState], None], advance: Callable[[], None]) -> None:
    """Invoke the graph once per state, at most ``deps.config.concurrency`` at a time."""
    sem = asyncio.Semaphore(deps.config.concurrency)
    tasks: set[asyncio.Task] = set()
    stopped: list[BudgetExceeded] = []

    async def one(state: SampleState) -> None:
        try:
            out = await graph.ainvoke(state, context=deps)
        except BudgetExceeded as e:  # not an error: the sample stays unfinished, resumable
            stopped.append(e)
            return
        except Exception as e:  # an unexpected failure costs one sample, not the run
            log.exception("sample %s failed", state["sample"].id)
            out = {**state, "verdict": state.get("verdict") or "error",
                   "errors": [*state.get("errors", []), f"internal: {type(e).__name__}: {e}"]}
        finally:
            sem.release()
        on_done(out)
        advance()

    for state in states:
        await sem.acquire()
        if stopped:
            sem.release()
            break
        task = asyncio.create_task(one(state))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    if stopped:
        raise stopped[0]


def _input_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_run_dir(store: RunStore, digest: str) -> None:
    old = store.get_meta("input_sha256")
    if old is not None and old != digest:
        raise ValueError(f"{store.dir} holds a run over a different input; "
                         "choose a new --output directory")
    store.set_meta("input_sha256", digest)


def _selection(store: RunStore, beta: float) -> list[tuple[str, str, str, str | None]]:
    """Fates of relabeled samples: errors, unparsed reviews, then the β lowest entropies."""
    fates, candidates = [], []
    for r in store.records(stage="relabeled"):
        orig = r["sample"]["label"]
        if r.get("errors"):
            fates.append((r["id"], "error", "relabel: " + "; ".join(r["errors"]), None))
        elif r.get("reviewer_answer") is None:
            fates.append((r["id"], "relabeled-dropped", "reviewer reply unparsed", None))
        else:
            candidates.append((r, orig))
    ent = [c[0].get("entropy") for c in candidates]
    keep = select_lowest([math.nan if e is None else e for e in ent], beta)
    for (r, orig), k, e in zip(candidates, keep, ent, strict=True):
        new = r["reviewer_answer"]
        change = f"label {orig} -> {new}" if new != orig else f"label {orig} confirmed"
        e_txt = "unknown" if e is None else f"{e:.4f} ({r.get('entropy_source')})"
        if k:
            fates.append((r["id"], "relabeled-kept", f"{change}; entropy {e_txt} in lowest "
                          f"{beta:.0%}", new))
        else:
            fates.append((r["id"], "relabeled-dropped", f"{change}; entropy {e_txt} above the "
                          f"{beta:.0%} cutoff", new))
    return fates


def _reopen_errors(store: RunStore) -> int:
    """Make error rows from endpoint failures pending again: a failed detection reruns whole,
    a failed relabel reruns from retrieval. Input-validation errors stay as they are."""
    n = 0
    with store.db:
        for sid, stage in store.db.execute(
                "SELECT id, stage FROM samples WHERE fate='error' AND stage != 'error'").fetchall():
            if stage == "detected":
                store.db.execute("DELETE FROM samples WHERE id=?", (sid,))
            else:
                data = json.loads(store.db.execute("SELECT data FROM samples WHERE id=?",
                                                   (sid,)).fetchone()[0])
                data = {k: v for k, v in data.items() if k in ("sample", *_DETECTED)}
                store.db.execute("UPDATE samples SET stage='detected', fate=NULL, reason=NULL, "
                                 "final=NULL, entropy=NULL, entropy_source=NULL, data=? "
                                 "WHERE id=?", (json.dumps(data), sid))
            n += 1
    return n


async def curate(config: Config, input_path: str | Path, run_dir: str | Path,
                 reporter: Reporter | None = None,
                 options: RunOptions | None = None) -> dict[str, Any]:
    """Run the RobustFT pipeline; returns the summary (also written to summary.json).

    Raises BudgetExceeded when a call/token budget stops the run; rerunning continues it.
    """
    rep, opts = reporter or _Quiet(), options or RunOptions()
    input_path, run_dir = Path(input_path), Path(run_dir)
    for role in ROLES:
        if not resolved_endpoint(config, role)[0]:
            raise ValueError(f"no endpoint for role '{role}': pass --base-url, set "
                             "OPENAI_BASE_URL, or set endpoint.base_url in the config")
    prompts = load_prompts(config.prompts_dir)
    samples, input_errors, is_mc = load_samples(input_path, config.data)
    store = RunStore(run_dir)
    _check_run_dir(store, _input_digest(input_path))
    store.set_meta("input_path", str(input_path.resolve()))
    if opts.embedded:
        store.set_meta("embedded", "1")
    if opts.retry_errors:
        rep.note(f"retrying {_reopen_errors(store)} error row(s)")
    (run_dir / "config.yaml").write_text(dump_config(config))
    (run_dir / "prompts.json").write_text(json.dumps(
        {n: {"hash": p.hash, "path": str(p.path)} for n, p in prompts.items()}, indent=1))
    done = store.stages()
    for e in input_errors:
        store.save(e.id, e.row, e.source, "error", {"raw": e.raw, "errors": [e.reason]},
                   verdict="error", fate="error", reason=e.reason)
    by_id: dict[str, Sample] = {s.id: s for s in samples}
    cache = RequestCache(opts.cache_path or run_dir / "cache.sqlite")
    client = LLMClient(config.endpoint, cache, Budget(opts.max_calls, opts.max_tokens))
    deps = Deps(config=config, client=client, prompts=prompts)
    graph = build_robustft_graph()

    def save(state: SampleState, stage: str) -> None:
        s, err = state["sample"], state.get("errors")
        data = {"sample": s.model_dump(), **_plain(state)}
        fate = reason = None
        if stage == "detected" and (err or state.get("verdict") != "noisy"):
            fate = "error" if err else "clean"
            reason = ("detect: " + "; ".join(err)) if err else state.get("verdict_reason")
        store.save(s.id, s.row, s.source, stage, data, state.get("calls", []),
                   verdict=state.get("verdict"), original=s.label,
                   final=s.label if fate == "clean" else None, entropy=state.get("entropy"),
                   entropy_source=state.get("entropy_source"), fate=fate, reason=reason)

    try:
        todo = [s for s in samples if s.id not in done]
        rep.start("detect", len(samples))
        for _ in range(len(samples) - len(todo)):
            rep.advance("detect")
        await run_stage(graph, ({"sample": s} for s in todo), deps,
                        lambda st: save(st, "detected"), lambda: rep.advance("detect"))

        records = list(store.records())
        clean = [by_id[r["id"]] for r in records if r.get("verdict") == "clean"]
        noisy = [r for r in records if r["stage"] == "detected" and r.get("verdict") == "noisy"]
        rep.note(f"indexing {len(clean)} clean samples")
        embedder = await asyncio.to_thread(Embedder, config.retrieval.embedder,
                                           config.retrieval.batch_size)
        deps.index = CleanIndex(run_dir / "index", embedder)
        await asyncio.to_thread(deps.index.build, clean)
        await asyncio.to_thread(deps.index.prepare, [by_id[r["id"]] for r in noisy])

        n_noisy = sum(1 for r in records if r.get("verdict") == "noisy")
        rep.start("relabel", n_noisy)
        for _ in range(n_noisy - len(noisy)):
            rep.advance("relabel")
        states = ({"sample": by_id[r["id"]], **{k: r[k] for k in _KEEP if k in r}}
                  for r in noisy)
        await run_stage(graph, states, deps, lambda st: save(st, "relabeled"),
                        lambda: rep.advance("relabel"))
    finally:
        await deps.client.aclose()
        cache.close()

    fates = _selection(store, config.selection.beta)
    store.set_fates(fates)
    without_logprobs = store.db.execute(
        "SELECT COUNT(*) FROM samples WHERE entropy_source='agreement'").fetchone()[0]
    if without_logprobs:
        rep.note(f"{without_logprobs} relabeled sample(s) had no answer logprobs: their entropy "
                 "is the agreement fallback (see README, 'Selection')")
    summary = write_outputs(store, prompts["sft"], input_path, is_mc, config,
                            {"this_invocation": {"endpoint_calls": client.budget.calls,
                                                 "endpoint_tokens": client.budget.tokens,
                                                 "cache_hits": cache.hits}})
    store.close()
    return summary
