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
from robustft.store.reviews import ReviewStore
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
        reviews = ReviewStore(run) if ReviewStore.exists(run) else None
        rec = sample_detail(store, sample_id, reviews)
        if rec is None:
            raise fail(f"{run}: no sample with id {sample_id!r}")
        console.print_json(json.dumps(rec, default=str))
        return
    try:
        # without colour (a pipe, NO_COLOR) a correction is marked [-old-]{+new+}
        plain = console.no_color or console.color_system is None
        console.print(sample_story(store, sample_id, full, plain))
    except KeyError:
        raise fail(f"{run}: no sample with id {sample_id!r}") from None


def summary(run: Path) -> None:
    """Counts by fate, calls and tokens of a run."""
    try:
        store = RunStore.open_existing(run)
    except FileNotFoundError as e:
        raise fail(str(e)) from None
    console.print(summary_table(store.totals()))


def view(run: Path, port: Annotated[int, typer.Option(help="Port (0: any free).")] = 8765,
         host: Annotated[str, typer.Option(help="Address to bind; anything but 127.0.0.1 "
                                           "needs --password.")] = "127.0.0.1",
         password: Annotated[str | None, typer.Option(
             envvar="ROBUSTFT_VIEW_PASSWORD", show_envvar=True,
             help="Password every request must give (HTTP Basic; the user name is the "
                  "reviewer's name).")] = None,
         reviewer: Annotated[str | None, typer.Option(
             envvar="ROBUSTFT_REVIEWER", show_envvar=True,
             help="Name stored with your reviews (default: the login name).")] = None,
         ) -> None:
    """Browse a run in the web browser: summary, filterable sample table, agent timelines,
    and the review queue (#/review/0) where you accept, restore, drop or edit decisions."""
    from robustft.viewer.server import Viewer

    try:
        viewer = Viewer(run, port, host, password, reviewer)
    except ValueError as e:
        raise fail(str(e)) from None
    except (FileNotFoundError, OSError) as e:
        raise fail(str(e)) from None
    guard = " (password required)" if password else ""
    console.print(f"viewing [bold]{run}[/bold] at {viewer.url}{guard}; review queue at "
                  f"{viewer.url}#/review/0  (Ctrl-C to stop)")
    try:
        viewer.serve_forever()
    except KeyboardInterrupt:
        pass


def export(run: Path, output: Annotated[Path, typer.Option("--output", "-o", help=(
               "File to write, in the input's format and shape; sft.jsonl goes beside it."))],
           reviewed_only: Annotated[bool, typer.Option(
               help="Only the rows a person reviewed (and kept).")] = False) -> None:
    """Write the curated data with the people's reviews applied (stale reviews are not)."""
    from robustft.pipeline.outputs import export_run

    try:
        n, stats = export_run(run, output, reviewed_only)
    except (FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from None
    console.print(f"wrote {output} and {output.parent / 'sft.jsonl'}: {n} rows; "
                  f"{review_note(stats)}; decisions.csv updated")


def review_note(stats: dict | None) -> str:
    if not stats:
        return "no reviews"
    return (f"{stats['reviews'] - stats['stale']} review(s) applied"
            + (f", {stats['stale']} stale review(s) not applied" if stats["stale"] else ""))


def report(run: Path, html: Annotated[Path, typer.Option("--html", help="Output file.")],
           limit: Annotated[int, typer.Option(help="Most samples to include.")] = 5000,
           ) -> None:
    """One self-contained HTML file: the run summary and every sample whose label changed,
    that the judges were unsure of or the correction confirmed, or that a person reviewed."""
    from robustft.viewer.server import write_report

    try:
        n = write_report(run, html, limit)
    except FileNotFoundError as e:
        raise fail(str(e)) from None
    console.print(f"wrote {html} ({n} samples, {html.stat().st_size / 1e6:.1f} MB)")


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
