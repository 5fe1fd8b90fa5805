"""Starting a curation run from the command line: the run directory's writer lock, embedded
server, progress bars, signals, exit codes. Shared by the ``curate`` and ``demo`` commands.

Errors of the :mod:`robustft.errors` family become ``error: message`` (or ``stopped: …``)
with their exit code; anything else is a bug and keeps its traceback (exit 1). What only some
commands need is imported where it is used: the command line starts fast (a second writer
on a busy run directory is refused in well under a second after start-up)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

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
from rich.table import Table

from robustft.config import (
    Config,
    RunOptions,
    endpoint_urls,
    load_config,
    prices_of,
    resolved_endpoint,
)
from robustft.demo import is_demo_input
from robustft.errors import (
    EXIT_DISK_FULL,
    EXIT_INTERRUPTED,
    EXIT_ROW_ERRORS,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    RobustftError,
    RunDirError,
    is_disk_full,
    message_of,
)
from robustft.serving.servers import (
    EMBEDDED_NAME,
    EMBEDDED_WARNING,
    ManagedServer,
    needs_embedded,
    start_embedded,
)
from robustft.store.lock import lock_run_dir

console = Console()
err = Console(stderr=True)


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


def progress_columns() -> list:
    """Bar, count, percentage, rate and ETA."""
    return [TextColumn("[bold]{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
            TaskProgressColumn(), RateColumn(), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn()]


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(f"[bold red]error:[/bold red] {message}", soft_wrap=True)
    return typer.Exit(code)


def failure(e: RobustftError) -> typer.Exit:
    """The message and exit code of a robustft error."""
    return fail(message_of(e), e.exit_code)


def on_sigterm(*_) -> None:
    raise KeyboardInterrupt  # unwind through finally blocks: embedded servers stop cleanly


def _start_embedded(cfg: Config, input: Path, run_dir: Path, slots: int) -> ManagedServer:
    if not is_demo_input(input):
        err.print(f"[bold yellow]warning:[/bold yellow] [yellow]"
                  f"{EMBEDDED_WARNING.format(input=input)}[/yellow]", soft_wrap=True)
    err.print("[dim]no endpoint configured: starting the embedded llama-server "
              f"(Gemma-3-270M, {slots} slots; log: {run_dir / 'llama-server.log'})[/dim]")
    return start_embedded(cfg, run_dir, slots)


def run_curate_cli(cfg: Config, input: Path, output: Path, slots: int,
                   options: RunOptions | None = None) -> dict:
    """Run a curation from the CLI: the run directory's lock first (a second writer fails at
    once), the embedded server if needed, progress bars, summary."""
    options = options or RunOptions()
    signal.signal(signal.SIGTERM, on_sigterm)
    server = None
    try:
        with lock_run_dir(output) as lock:
            if note := lock.take_stale_note():
                err.print(f"[yellow]{note}[/yellow]", soft_wrap=True)
            from robustft.graph.runner import curate as run_curate  # on demand: start-up

            if needs_embedded(cfg):
                server = _start_embedded(cfg, input, output, slots)
                options.embedded = True
            with Progress(*progress_columns(), console=err, transient=False) as progress:
                if options.ray:
                    from robustft.graph.ray_run import curate_ray

                    summary = curate_ray(cfg, input, output, options.ray, options.workers,
                                         options.block_rows, RichReporter(progress), options)
                elif options.pilot:  # curate --pilot N: a run of N rows in RUN/pilot
                    from robustft.graph.pilot import run_pilot

                    summary = asyncio.run(run_pilot(cfg, input, output,
                                                    RichReporter(progress), options))
                else:
                    summary = asyncio.run(run_curate(cfg, input, output,
                                                     RichReporter(progress), options))
    except RobustftError as e:
        raise failure(e) from None
    except KeyboardInterrupt:
        raise fail("interrupted; rerun the same command to continue",
                   EXIT_INTERRUPTED) from None
    except Exception as e:
        if (cause := getattr(e, "cause", None)) is not None and isinstance(
                cause, RobustftError):  # a Ray task's error carries ours
            raise failure(cause) from None
        if is_disk_full(e):
            raise fail(f"stopped: the disk is full ({e}); free some space, then rerun the "
                       "same command to continue", EXIT_DISK_FULL) from None
        raise
    finally:
        if server is not None:
            server.stop()
    if "pilot" in summary:
        from robustft.methods.pilot import describe_pilot

        console.print("\n".join(describe_pilot(summary["pilot"])), soft_wrap=True)
        console.print(f"[bold]pilot done[/bold]: its run is in {output}/pilot (robustft "
                      f"summary {output}/pilot). Run the same command without --pilot to "
                      f"curate the whole file: the pilot's calls come from the cache.")
        return summary
    from robustft.cli.render import summary_table

    console.print(summary_table(summary))
    console.print(f"outputs in [bold]{output}[/bold]: curated{input.suffix.lower()}, sft.jsonl, "
                  f"decisions.csv, summary.json; traces: robustft trace {output} ID")
    if (r := summary.get("reviews")) and r["reviews"]:
        console.print(f"[bold]reviews applied[/bold] to curated and sft.jsonl: "
                      f"{r['reviews'] - r['stale']} of {r['reviews']}"
                      + (f" ({r['stale']} stale: the agents decided otherwise since; not "
                         "applied, see robustft view)" if r["stale"] else ""))
    return summary


def exit_for(summary: dict, output: Path) -> None:
    """Exit 1 when rows failed inside robustft (a bug), 3 when rows ended as errors."""
    if n := summary.get("internal_errors"):
        err.print(f"[bold red]{n} row(s) failed with an internal error[/bold red]: a bug in "
                  "robustft, not in your data (the traceback is above; the reason is in "
                  f"{output}/decisions.csv); please report it")
        raise typer.Exit(EXIT_UNEXPECTED)
    if summary["fates"].get("error"):
        err.print(f"[yellow]{summary['fates']['error']} row(s) ended as errors; see "
                  f"{output}/decisions.csv[/yellow]")
        raise typer.Exit(EXIT_ROW_ERRORS)


def load_for_retry(run: Path, config: Path | None) -> tuple[Config, Path]:
    """Config and input of an earlier run, for --retry-errors."""
    from robustft.store.runstore import RunStore

    store = RunStore.open_existing(run)
    input_path, embedded = store.get_meta("input_path"), store.get_meta("embedded") == "1"
    store.close()
    if input_path is None:
        raise RunDirError(f"{run}: the run directory does not record its input")
    cfg = load_config(config or run / "config.yaml")
    if embedded and config is None:  # that server is gone: start a new one
        cfg.endpoint.base_url = cfg.endpoint.model = None
    return cfg, Path(input_path)


def dry_run_table(cfg: Config, input: Path, method: str, batch: bool = False) -> None:
    from robustft.data.files import load_samples
    from robustft.graph.runner import method_named
    from robustft.llm.prompt_files import builtin_dir, load_prompts
    from robustft.llm.tokens import tokenizer_name
    from robustft.methods.cost import call_cost
    from robustft.pipeline.plan import plan_calls

    m = method_named(method)
    prompts = load_prompts(cfg.prompts_dir or (builtin_dir() / "base"
                                               if needs_embedded(cfg) else None))
    samples, errors, shape = load_samples(input, cfg.data)
    console.print(endpoint_table(cfg, m.roles))
    if needs_embedded(cfg) and not is_demo_input(input):
        err.print(f"[bold yellow]warning:[/bold yellow] [yellow]"
                  f"{EMBEDDED_WARNING.format(input=input)}[/yellow]", soft_wrap=True)
    console.print(f"detected {shape.describe()}; {len(samples)} rows"
                  + (f", {len(errors)} invalid" if errors else ""))
    prices = prices_of(cfg)
    t = Table("stage", "role", "prompt", "calls", "est. prompt tokens", "max completion tokens",
              *(["max cost"] if prices else []),
              title=f"planned calls for {len(samples)} samples ({len(errors)} invalid rows; "
                    f"token estimates: {tokenizer_name()})")
    total, cost = [0, 0, 0], 0.0
    rows = plan_calls(cfg, prompts, samples, m)
    for r in rows:
        c = call_cost(prices, resolved_endpoint(cfg, r["role"])[1], r["prompt_tokens"],
                      r["max_completion_tokens"])
        cost += c
        t.add_row(r["stage"], r["role"], r["prompt"], str(r["calls"]), str(r["prompt_tokens"]),
                  str(r["max_completion_tokens"]), *([f"{c:.4f}"] if prices else []))
        total = [a + b for a, b in zip(total, (r["calls"], r["prompt_tokens"],
                                               r["max_completion_tokens"]), strict=True)]
    t.add_row("total", "", "", *map(str, total), *([f"{cost:.4f}"] if prices else []),
              style="bold")
    console.print(t)
    if batch:
        console.print(batch_plan(cfg, rows))
    if prices:
        console.print(f"estimated cost at most {cost:.4f} (every completion at max_tokens; "
                      "roles whose model has no price count 0)")
    console.print("relabel / correct calls happen only for flagged samples; generated text "
                  "inserted into later prompts is not counted")


def endpoint_table(cfg: Config, roles: tuple[str, ...] | list[str]) -> Table:
    """Which endpoint, model and key variable each role of the method uses (``--dry-run``);
    roles without an endpoint name the embedded server the run would start."""
    t = Table("role", "endpoint", "model", "API key variable", title="endpoints")
    for role in roles:
        urls, model, key_env = resolved_endpoint(cfg, role)
        if not urls:
            t.add_row(role, "embedded llama-server (started for the run, 127.0.0.1)",
                      f"{EMBEDDED_NAME} (Gemma-3-270M Q4_K_M, a base model)", "-")
            continue
        t.add_row(role, ", ".join(urls), model or "the endpoint's only model (GET /models)",
                  key_env)
    if cfg.retrieval.embedder == "endpoint" and cfg.relabel.context:
        urls = endpoint_urls(cfg, cfg.retrieval.base_url)
        t.add_row("embeddings", ", ".join(urls) or "-",
                  cfg.retrieval.model or "the endpoint's only model (GET /models)",
                  cfg.retrieval.api_key_env or cfg.endpoint.api_key_env)
    return t


def batch_plan(cfg: Config, rows: list[dict]) -> str:
    """What ``--batch`` sends: per stage, its requests as batch files, one round per step of
    dependent calls (a sample's next call waits for the previous reply)."""
    from robustft.llm.batch import MAX_REQUESTS

    stages: dict[str, list[int]] = {}
    for r in rows:
        stages.setdefault(r["stage"], []).append(r["calls"])
    where = ", ".join(endpoint_urls(cfg, None)) or "the endpoint"
    lines = [f"batch plan (--batch): requests go to {where} as OpenAI batches of at most "
             f"{MAX_REQUESTS:,} requests, polled every {cfg.batch.poll_s:g}-"
             f"{cfg.batch.max_poll_s:g} s (window {cfg.batch.completion_window}); input files "
             "kept in RUN/batches/"]
    for stage, calls in stages.items():
        files = sum(-(-n // MAX_REQUESTS) for n in calls)
        lines.append(f"  {stage}: {sum(calls)} requests in at most {len(calls)} rounds, "
                     f"{files} batch file(s)")
    return "\n".join(lines)
