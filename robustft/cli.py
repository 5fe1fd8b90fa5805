"""``robustft`` command line.

Exit codes: 0 success; 1 unexpected failure; 2 bad usage, config, prompt or input file;
3 the run completed but some rows ended as errors (see decisions.csv).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.syntax import Syntax
from rich.table import Table

from .config import ConfigError, load_config
from .io import InputFileError
from .prompts import PromptError, builtin_dir, load_prompt, load_prompts
from .runstore import RunStore
from .tracing import sample_story, summary_table

app = typer.Typer(help="Noise-robust LLM fine-tuning: find, relabel or drop wrong labels.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
prompts_app = typer.Typer(help="List, show and check prompt files.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")
console = Console()
err = Console(stderr=True)

EXIT_BAD_INPUT, EXIT_ROW_ERRORS = 2, 3


class RateColumn(ProgressColumn):
    """Samples per second."""

    def render(self, task) -> str:
        return f"{task.speed:.1f} samples/s" if task.speed else "– samples/s"


class RichReporter:
    """Progress bars with rate and ETA for each stage."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def start(self, stage: str, total: int) -> None:
        self.tasks[stage] = self.progress.add_task(stage, total=total)

    def advance(self, stage: str) -> None:
        self.progress.advance(self.tasks[stage])

    def note(self, text: str) -> None:
        self.progress.console.print(f"[dim]{text}[/dim]")


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err.print(f"[bold red]error:[/bold red] {message}")
    return typer.Exit(code)


@app.command()
def curate(
    input: Annotated[Path, typer.Option("--input", "-i", help="JSONL, CSV or Parquet file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config.")] = None,
    prompts: Annotated[Path | None, typer.Option(help="Prompt override directory.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Endpoint for all roles.")] = None,
    model: Annotated[str | None, typer.Option(help="Model for all roles.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Samples in flight.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Detect noisy labels, relabel them, select by entropy; write the curated dataset."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise _fail(str(e)) from None
    if base_url:
        cfg.endpoint.base_url = base_url
        for r in cfg.roles.values():
            r.base_url = None
    if model:
        cfg.endpoint.model = model
        for r in cfg.roles.values():
            r.model = None
    if prompts:
        cfg.prompts_dir = str(prompts)
    if concurrency:
        cfg.concurrency = concurrency
    from graph.runner import curate as run_curate  # the graph layer, imported on demand

    columns = [TextColumn("[bold]{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), RateColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    try:
        with Progress(*columns, console=err, transient=False) as progress:
            summary = asyncio.run(run_curate(cfg, input, output, RichReporter(progress)))
    except (InputFileError, PromptError, ValueError) as e:
        raise _fail(str(e)) from None
    console.print(summary_table(summary))
    console.print(f"outputs in [bold]{output}[/bold]: curated{input.suffix.lower()}, sft.jsonl, "
                  f"decisions.csv, summary.json; traces: robustft trace {output} ID")
    if summary["fates"].get("error"):
        err.print(f"[yellow]{summary['fates']['error']} row(s) ended as errors; see "
                  f"{output}/decisions.csv[/yellow]")
        raise typer.Exit(EXIT_ROW_ERRORS)


@app.command()
def trace(run: Path, sample_id: Annotated[str, typer.Argument(help="Sample id.")],
          full: Annotated[bool, typer.Option(help="Show prompts and whole replies.")] = False,
          as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
          ) -> None:
    """Tell one sample's story: every agent call and every decision."""
    try:
        store = RunStore.open_existing(run)
    except FileNotFoundError as e:
        raise _fail(str(e)) from None
    if as_json:
        rec = store.record(sample_id)
        if rec is None:
            raise _fail(f"{run}: no sample with id {sample_id!r}")
        rec["calls"] = [{"stage": s, **c.model_dump()} for s, c in store.calls(sample_id)]
        console.print_json(json.dumps(rec, default=str))
        return
    try:
        console.print(sample_story(store, sample_id, full))
    except KeyError:
        raise _fail(f"{run}: no sample with id {sample_id!r}") from None


@app.command()
def summary(run: Path) -> None:
    """Counts by fate, calls and tokens of a run."""
    try:
        store = RunStore.open_existing(run)
    except FileNotFoundError as e:
        raise _fail(str(e)) from None
    console.print(summary_table(store.totals()))


@prompts_app.command("list")
def prompts_list(override: Annotated[Path | None, typer.Option("--prompts")] = None) -> None:
    """Prompt names, hashes, sources and descriptions."""
    try:
        loaded = load_prompts(override)
    except PromptError as e:
        raise _fail(str(e)) from None
    t = Table("name", "hash", "source", "variables", "description")
    for name, p in loaded.items():
        src = "built-in" if p.path.parent == builtin_dir() else str(p.path)
        t.add_row(name, p.hash, src, ", ".join(p.variables), p.description)
    console.print(t)


@prompts_app.command("show")
def prompts_show(name: str,
                 override: Annotated[Path | None, typer.Option("--prompts")] = None) -> None:
    """Print one prompt file."""
    try:
        loaded = load_prompts(override)
    except PromptError as e:
        raise _fail(str(e)) from None
    if name not in loaded:
        raise _fail(f"no prompt named {name!r}; known: {sorted(loaded)}")
    console.print(Syntax(loaded[name].path.read_text(), "yaml"))


@prompts_app.command("check")
def prompts_check(directory: Annotated[Path | None, typer.Argument()] = None) -> None:
    """Validate the built-in prompts, or an override directory against them."""
    try:
        loaded = load_prompts(directory)
    except PromptError as e:
        raise _fail(str(e)) from None
    if directory is not None:
        for p in sorted(Path(directory).glob("*.yaml")):
            load_prompt(p, allowed=set(loaded[p.stem].variables))
    console.print(f"[green]ok[/green]: {len(loaded)} prompts valid"
                  + (f" (overrides from {directory})" if directory else ""))


if __name__ == "__main__":
    app()
