"""Reading a run: ``trace``, ``summary``, ``view``, ``report``, and the ``prompts`` tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.syntax import Syntax
from rich.table import Table

from robustft.cli.launch import console, fail
from robustft.cli.render import sample_story, summary_table
from robustft.llm.prompt_files import PromptError, builtin_dir, load_prompt, load_prompts
from robustft.store.runstore import RunStore
from robustft.viewer.data import sample_detail


def trace(run: Path, sample_id: Annotated[str, typer.Argument(help="Sample id.")],
          full: Annotated[bool, typer.Option(help="Show prompts and whole replies.")] = False,
          as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
          ) -> None:
    """Tell one sample's story: every agent call and every decision."""
    try:
        store = RunStore.open_existing(run)
    except FileNotFoundError as e:
        raise fail(str(e)) from None
    if as_json:
        rec = sample_detail(store, sample_id)
        if rec is None:
            raise fail(f"{run}: no sample with id {sample_id!r}")
        console.print_json(json.dumps(rec, default=str))
        return
    try:
        console.print(sample_story(store, sample_id, full))
    except KeyError:
        raise fail(f"{run}: no sample with id {sample_id!r}") from None


def summary(run: Path) -> None:
    """Counts by fate, calls and tokens of a run."""
    try:
        store = RunStore.open_existing(run)
    except FileNotFoundError as e:
        raise fail(str(e)) from None
    console.print(summary_table(store.totals()))


def view(run: Path, port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free)."
                                                      )] = 8765) -> None:
    """Browse a run in the web browser: summary, filterable sample table, agent timelines."""
    from robustft.viewer.server import Viewer

    try:
        viewer = Viewer(run, port)
    except (FileNotFoundError, OSError) as e:
        raise fail(str(e)) from None
    console.print(f"viewing [bold]{run}[/bold] at {viewer.url}  (Ctrl-C to stop)")
    try:
        viewer.serve_forever()
    except KeyboardInterrupt:
        pass


def report(run: Path, html: Annotated[Path, typer.Option("--html", help="Output file.")],
           limit: Annotated[int, typer.Option(help="Most changed samples to include.")] = 5000,
           ) -> None:
    """One self-contained HTML file: the run summary and every sample whose label changed."""
    from robustft.viewer.server import write_report

    try:
        n = write_report(run, html, limit)
    except FileNotFoundError as e:
        raise fail(str(e)) from None
    console.print(f"wrote {html} ({n} changed samples, {html.stat().st_size / 1e6:.1f} MB)")


def prompts_list(override: Annotated[Path | None, typer.Option("--prompts")] = None) -> None:
    """Prompt names, hashes, sources and descriptions."""
    try:
        loaded = load_prompts(override)
    except PromptError as e:
        raise fail(str(e)) from None
    t = Table("name", "hash", "source", "variables", "description")
    for name, p in loaded.items():
        src = "built-in" if p.path.parent == builtin_dir() else str(p.path)
        t.add_row(name, p.hash, src, ", ".join(p.variables), p.description)
    console.print(t)


def prompts_show(name: str,
                 override: Annotated[Path | None, typer.Option("--prompts")] = None) -> None:
    """Print one prompt file."""
    try:
        loaded = load_prompts(override)
    except PromptError as e:
        raise fail(str(e)) from None
    if name not in loaded:
        raise fail(f"no prompt named {name!r}; known: {sorted(loaded)}")
    console.print(Syntax(loaded[name].path.read_text(), "yaml"))


def prompts_check(directory: Annotated[Path | None, typer.Argument()] = None) -> None:
    """Validate the built-in prompts, or an override directory against them."""
    try:
        loaded = load_prompts(directory)
    except PromptError as e:
        raise fail(str(e)) from None
    if directory is not None:
        for p in sorted(Path(directory).glob("*.yaml")):
            load_prompt(p, allowed=set(loaded[p.stem].variables))
    console.print(f"[green]ok[/green]: {len(loaded)} prompts valid"
                  + (f" (overrides from {directory})" if directory else ""))
