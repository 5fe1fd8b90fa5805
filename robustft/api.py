"""The Python API: ``robustft.curate(data, output=...)`` runs the same pipeline as the CLI (same
run directory, resume, cache and traces) on a path, a list of dicts, a pandas DataFrame or a
``datasets.Dataset``, and hands the curated rows back in the input's shape::

    import robustft
    result = robustft.curate(rows, output="runs/mine", base_url="http://127.0.0.1:8000/v1")
    result.curated      # kept rows, like the input (a list, a DataFrame or a Dataset)
    result.decisions    # one dict per input row: id, row, fate, reason, original, final
    result.summary, result.run_dir

``await robustft.acurate(...)`` is the same inside a running event loop (a notebook).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustft.config import Config, RunOptions, load_config
from robustft.data.files import file_format, iter_raw_rows
from robustft.data.shapes import Shape
from robustft.data.text import open_text, text_encoding
from robustft.demo import is_demo_input
from robustft.graph.runner import curate as run_curate
from robustft.pipeline.setup import Reporter
from robustft.serving.servers import EMBEDDED_WARNING, needs_embedded, start_embedded
from robustft.store.lock import lock_run_dir

log = logging.getLogger("robustft")


@dataclass
class CurateResult:
    """What a curation produced; every list is read from the run directory's files."""

    run_dir: Path
    summary: dict[str, Any]
    shape: Shape
    input_kind: str = "path"  # path | list | pandas | datasets
    _curated: Any = field(default=None, repr=False)

    @property
    def curated(self) -> Any:
        """Kept rows in the input's shape: a list of dicts for a path or a list, a DataFrame
        for a DataFrame, a ``datasets.Dataset`` for a Dataset."""
        if self._curated is None:
            rows = _read_curated(Path(self.summary["outputs"]["curated"]),
                                 self.shape.encoding)
            if self.input_kind == "pandas":
                import pandas as pd

                self._curated = pd.DataFrame(rows)
            elif self.input_kind == "datasets":
                import datasets

                self._curated = datasets.Dataset.from_list(rows)
            else:
                self._curated = rows
        return self._curated

    @property
    def decisions(self) -> list[dict[str, Any]]:
        """One dict per input row, in input order: id, row, fate, reason, original, final."""
        with (self.run_dir / "decisions.csv").open(newline="", encoding="utf-8") as f:
            return [{"id": d["id"], "row": int(d["row"]), "fate": d["fate"],
                     "reason": d["reason"], "original": d["original_label"] or None,
                     "final": d["final_label"] or None} for d in csv.DictReader(f)]


def _read_curated(path: Path, encoding: str | None = None) -> list[dict[str, Any]]:
    """The curated file's rows (written in the input's ``encoding``)."""
    fmt = file_format(path, encoding)
    if fmt not in ("jsonl", "json", "csv"):
        return list(iter_raw_rows(path))
    with open_text(path, text_encoding(path, encoding), newline="") as f:
        if fmt == "jsonl":
            return [json.loads(line) for line in f if line.strip()]
        if fmt == "json":
            return json.loads(f.read())
        return list(csv.DictReader(f))


def _materialise(data: Any, run_dir: Path) -> tuple[Path, str]:
    """A path for ``data`` (written once into the run directory for in-memory data, so a
    rerun with the same data resumes) and the kind of input it was."""
    if isinstance(data, (str, Path)):
        return Path(data), "path"
    kind, rows = "list", data
    if type(data).__module__.startswith("pandas"):
        kind, rows = "pandas", json.loads(data.to_json(orient="records", force_ascii=False))
    elif type(data).__module__.startswith("datasets"):
        kind, rows = "datasets", data.to_list()
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError("data must be a path, a list of dicts, a pandas DataFrame or a "
                        "datasets.Dataset")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "input.jsonl"
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path, kind


def _config(config: Config | str | Path | None, base_url: str | None, model: str | None,
            concurrency: int | None, prompts: str | Path | None) -> Config:
    cfg = config.model_copy(deep=True) if isinstance(config, Config) else load_config(
        Path(config) if config is not None else None)
    cfg.override(base_url, model, concurrency, prompts)
    return cfg


async def acurate(data: Any, *, output: str | Path, method: str = "robustft",
                  base_url: str | None = None, model: str | None = None,
                  config: Config | str | Path | None = None, prompts: str | Path | None = None,
                  concurrency: int | None = None, cache: str | Path | None = None,
                  call_budget: int | None = None, token_budget: int | None = None,
                  cost_budget: float | None = None, slots: int = 4,
                  reporter: Reporter | None = None, max_calls: int | None = None,
                  max_tokens: int | None = None) -> CurateResult:
    """Curate ``data`` into the run directory ``output`` (rerunning continues it). With no
    endpoint configured anywhere, the embedded llama-server runs for the call.

    ``call_budget``, ``token_budget`` and ``cost_budget`` cap what this call may spend on the
    endpoint, all calls together (override the config's); once reached, the run stops
    (:class:`~robustft.llm.budget.BudgetExceeded`) and calling again continues it.
    ``max_calls`` and ``max_tokens`` are their deprecated names (a FutureWarning)."""
    budgets = _renamed_budgets(call_budget, token_budget, max_calls, max_tokens, 2)
    run_dir = Path(output)
    cfg = _config(config, base_url, model, concurrency, prompts)
    opts = RunOptions(cache_path=Path(cache) if cache else None, call_budget=budgets[0],
                      token_budget=budgets[1], cost_budget=cost_budget, method=method)
    opts.budgets(cfg)  # a cost budget without prices is refused before anything starts
    server = None
    with lock_run_dir(run_dir) as lock:  # RunDirBusy at once when another process writes
        if note := lock.take_stale_note():
            log.warning("%s", note)
        path, kind = _materialise(data, run_dir)
        try:
            if needs_embedded(cfg):
                if kind != "path" or not is_demo_input(path):
                    warnings.warn(EMBEDDED_WARNING.format(input=path), stacklevel=2)
                server = await asyncio.to_thread(start_embedded, cfg, run_dir, slots)
                opts.embedded = True
            summary = await run_curate(cfg, path, run_dir, reporter, opts)
        finally:
            if server is not None:
                server.stop()
    shape = Shape.from_dict(json.loads((run_dir / "input_shape.json").read_text()))
    return CurateResult(run_dir, summary, shape, kind)


_RENAMED = {
    "max_calls": ("call_budget", "robustft.curate(max_calls=...) is deprecated: use "
                  "call_budget=... (the endpoint calls the whole run may make); max_calls will "
                  "be removed in the next release."),
    "max_tokens": ("token_budget", "robustft.curate(max_tokens=...) is deprecated and is NOT "
                   "the per-reply token limit: it is a WHOLE-RUN budget (prompt + completion "
                   "tokens of all calls together; the run stops once it is spent), now named "
                   "token_budget=.... To limit the length of each reply, set "
                   "roles.<role>.max_tokens in the config. max_tokens= will be removed in the "
                   "next release."),
}


def _renamed_budgets(call_budget: int | None, token_budget: int | None,
                     max_calls: int | None, max_tokens: int | None,
                     stacklevel: int) -> tuple[int | None, int | None]:
    """The call and token budgets, taking the deprecated names (with a FutureWarning that
    names the new one) when the new ones are not given."""
    out = [call_budget, token_budget]
    for i, (old, value) in enumerate((("max_calls", max_calls), ("max_tokens", max_tokens))):
        if value is None:
            continue
        new, message = _RENAMED[old]
        if out[i] is not None:
            raise TypeError(f"give {new}= only: {old}= is its deprecated name")
        warnings.warn(message, FutureWarning, stacklevel=stacklevel + 1)
        out[i] = value
    return out[0], out[1]


def curate(data: Any, *, output: str | Path, **kwargs: Any) -> CurateResult:
    """Synchronous :func:`acurate` (same keyword arguments); inside a running event loop (a
    notebook) it runs on a worker thread with its own loop."""
    budgets = _renamed_budgets(kwargs.pop("call_budget", None), kwargs.pop("token_budget", None),
                               kwargs.pop("max_calls", None), kwargs.pop("max_tokens", None), 2)
    kwargs.update(call_budget=budgets[0], token_budget=budgets[1])
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(acurate(data, output=output, **kwargs))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, acurate(data, output=output, **kwargs)).result()
