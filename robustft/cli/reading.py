"""Reading a run: ``trace``, ``summary``, ``view``, ``report``, and the ``prompts`` tools.

Errors of the robustft family (a directory that is not a run, a bad prompt file) are reported
by the command line itself (:mod:`robustft.cli.main`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.syntax import Syntax
from rich.table import Table

from robustft.cli.launch import console, fail
from robustft.llm.prompt_files import builtin_dir, load_prompt, load_prompts


def trace(run: Path, sample_id: Annotated[str, typer.Argument(help="Sample id.")],
          full: Annotated[bool, typer.Option(help="Show prompts and whole replies.")] = False,
          as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
          ) -> None:
    """Tell one sample's story: every agent call and every decision."""
    from robustft.cli.render import sample_story
    from robustft.store.reviews import ReviewStore
    from robustft.store.runstore import RunStore
    from robustft.viewer.data import sample_detail

    store = RunStore.open_existing(run)  # a RunDirError is reported by the command line
    if as_json:
        reviews = ReviewStore(run) if ReviewStore.exists(run) else None
        rec = sample_detail(store, sample_id, reviews)
        if rec is None:
            raise fail(f"{run}: no sample with id {sample_id!r}")
        console.print_json(json.dumps(rec, default=str))
        return
    if store.record(sample_id) is None:
        raise fail(f"{run}: no sample with id {sample_id!r}")
    # without colour (a pipe, NO_COLOR) a correction is marked [-old-]{+new+}
    plain = console.no_color or console.color_system is None
    console.print(sample_story(store, sample_id, full, plain))


def summary(run: Path) -> None:
    """Counts by fate, calls and tokens of a run, and the blind audit's estimates from the
    current verdicts (the audit sample is drawn, into RUN/reviews.sqlite, when missing)."""
    from robustft.cli.render import summary_table
    from robustft.pipeline.audit import run_audit_summary
    from robustft.store.runstore import RunStore

    store = RunStore.open_existing(run)  # a RunDirError is reported by the command line
    audit = run_audit_summary(run, store, draw_sample=True)
    console.print(summary_table({**store.totals(), **({"audit": audit} if audit else {})}))


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
    the review queue (#/review/0) where you accept, restore, drop or edit decisions, and the
    blind audit (#/audit/0) where you judge a random sample of rows before seeing what the
    agents decided."""
    from robustft.viewer.server import Viewer

    viewer = Viewer(run, port, host, password, reviewer)
    guard = " (password required)" if password else ""
    console.print(f"viewing [bold]{run}[/bold] at {viewer.url}{guard}; review queue at "
                  f"{viewer.url}#/review/0, blind audit at {viewer.url}#/audit/0  "
                  "(Ctrl-C to stop)")
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

    n, stats = export_run(run, output, reviewed_only)
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

    n = write_report(run, html, limit)
    console.print(f"wrote {html} ({n} samples, {html.stat().st_size / 1e6:.1f} MB)")


def prompts_list(override: Annotated[Path | None, typer.Option("--prompts")] = None) -> None:
    """Prompt names, hashes, sources and descriptions."""
    loaded = load_prompts(override)
    t = Table("name", "hash", "source", "variables", "description")
    for name, p in loaded.items():
        src = "built-in" if p.path.parent == builtin_dir() else str(p.path)
        t.add_row(name, p.hash, src, ", ".join(p.variables), p.description)
    console.print(t)


def prompts_show(name: str,
                 override: Annotated[Path | None, typer.Option("--prompts")] = None) -> None:
    """Print one prompt file."""
    loaded = load_prompts(override)
    if name not in loaded:
        raise fail(f"no prompt named {name!r}; known: {sorted(loaded)}")
    console.print(Syntax(loaded[name].path.read_text(), "yaml"))


def prompts_check(directory: Annotated[Path | None, typer.Argument()] = None) -> None:
    """Validate the built-in prompts, or an override directory against them."""
    loaded = load_prompts(directory)
    if directory is not None:
        for p in sorted(Path(directory).glob("*.yaml")):
            load_prompt(p, allowed=set(loaded[p.stem].variables))
    console.print(f"[green]ok[/green]: {len(loaded)} prompts valid"
                  + (f" (overrides from {directory})" if directory else ""))
