"""``robustft`` command line.

Exit codes: 0 success; 1 unexpected failure; 2 bad usage, config, prompt or input file;
3 the run completed but some rows ended as errors (see decisions.csv).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import signal
import time
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

from .config import ROLES, Config, ConfigError, load_config, resolved_endpoint
from .demo import DEMO_INPUT, score_run
from .io import InputFileError
from .prompts import PromptError, builtin_dir, load_prompt, load_prompts
from .runstore import RunStore
from .serve import (
    EMBEDDED_NAME,
    ManagedServer,
    ServeError,
    embedded_model_path,
    embedded_server,
    free_port,
    llama_server_binary,
    llama_server_command,
    vllm_command,
)
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


def _on_sigterm(*_) -> None:
    raise KeyboardInterrupt  # unwind through finally blocks: embedded servers stop cleanly


def _needs_embedded(cfg: Config) -> bool:
    return any(resolved_endpoint(cfg, role)[0] is None for role in ROLES)


def _start_embedded(cfg: Config, run_dir: Path, slots: int) -> ManagedServer:
    """Start the embedded llama-server for a run with no endpoint; roles without their own
    endpoint use it, with the base-model prompt set unless --prompts says otherwise."""
    run_dir.mkdir(parents=True, exist_ok=True)
    err.print("[dim]no endpoint configured: starting the embedded llama-server "
              f"(Gemma-3-270M, {slots} slots; log: {run_dir / 'llama-server.log'})[/dim]")
    server = embedded_server(slots=slots, log_path=run_dir / "llama-server.log").start()
    cfg.endpoint.base_url, cfg.endpoint.model = server.base_url, EMBEDDED_NAME
    if cfg.prompts_dir is None:
        cfg.prompts_dir = str(builtin_dir() / "base")
    return server


def _run_curate(cfg: Config, input: Path, output: Path, slots: int) -> dict:
    from graph.runner import curate as run_curate  # the graph layer, imported on demand

    signal.signal(signal.SIGTERM, _on_sigterm)
    server = None
    columns = [TextColumn("[bold]{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), RateColumn(), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn()]
    try:
        if _needs_embedded(cfg):
            server = _start_embedded(cfg, output, slots)
        with Progress(*columns, console=err, transient=False) as progress:
            summary = asyncio.run(run_curate(cfg, input, output, RichReporter(progress)))
    except (InputFileError, PromptError, ServeError, ValueError) as e:
        raise _fail(str(e)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; rerun the same command to continue", 130) from None
    finally:
        if server is not None:
            server.stop()
    console.print(summary_table(summary))
    console.print(f"outputs in [bold]{output}[/bold]: curated{input.suffix.lower()}, sft.jsonl, "
                  f"decisions.csv, summary.json; traces: robustft trace {output} ID")
    return summary


def _exit_for(summary: dict, output: Path) -> None:
    if summary["fates"].get("error"):
        err.print(f"[yellow]{summary['fates']['error']} row(s) ended as errors; see "
                  f"{output}/decisions.csv[/yellow]")
        raise typer.Exit(EXIT_ROW_ERRORS)


@app.command()
def curate(
    input: Annotated[Path, typer.Option("--input", "-i", help="JSONL, CSV or Parquet file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config.")] = None,
    prompts: Annotated[Path | None, typer.Option(help="Prompt override directory.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Endpoint for all roles.")] = None,
    model: Annotated[str | None, typer.Option(help="Model for all roles.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Samples in flight.")] = None,
    slots: Annotated[int, typer.Option(help="Embedded server slots (no endpoint).")] = 4,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Detect noisy labels, relabel them, select by entropy; write the curated dataset.

    With no endpoint configured, the embedded llama-server starts for the run."""
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
    _exit_for(_run_curate(cfg, input, output, slots), output)


@app.command()
def demo(output: Annotated[Path, typer.Option("--output", "-o")] = Path("runs/demo"),
         slots: Annotated[int, typer.Option(help="Embedded server slots.")] = 4) -> None:
    """Curate the shipped demo (country capitals, 30% noisy labels) on the embedded model and
    score detection against the demo's ground truth."""
    cfg = Config()
    for r in cfg.roles.values():  # the embedded server is the endpoint, whatever the env says
        r.base_url = None
    summary = _run_curate(cfg, DEMO_INPUT, output, slots)
    s = score_run(output)
    t = Table("detection precision", "recall", "F1", "noise base rate", "input label acc.",
              "curated label acc.", "kept", title="demo vs ground truth")
    t.add_row(f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}",
              f"{s['base_rate']:.3f}", f"{s['input_accuracy']:.3f}",
              f"{s['curated_accuracy']:.3f}", str(s["kept"]))
    console.print(t)
    (output / "demo_scores.json").write_text(json.dumps(s, indent=1))
    _exit_for(summary, output)


@app.command()
def serve(
    engine: Annotated[str, typer.Option(help="llama.cpp (CPU) or vllm (GPU).")] = "llama.cpp",
    model: Annotated[str | None, typer.Option(help="GGUF path (llama.cpp; default: the "
                                              "embedded Gemma-3-270M) or HF id/path (vllm).")
                     ] = None,
    slots: Annotated[int, typer.Option(help="llama.cpp parallel slots.")] = 4,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0,
    served_name: Annotated[str | None, typer.Option(help="vllm: served model name.")] = None,
    max_num_seqs: Annotated[int, typer.Option(help="vllm: concurrent sequences.")] = 256,
    api_key_env: Annotated[str, typer.Option(help="vllm: variable holding the API key.")
                           ] = "OPENAI_API_KEY",
    dry_run: Annotated[bool, typer.Option(help="Print the command line only.")] = False,
) -> None:
    """Serve a model on 127.0.0.1 until Ctrl-C / SIGTERM; prints the base URL."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    port = port or free_port()
    env: dict[str, str] = {}
    try:
        if engine == "llama.cpp":
            path = Path(model) if model else embedded_model_path()
            cmd = llama_server_command(llama_server_binary(), path, port, slots,
                                       passthrough=model is None,
                                       alias=None if model else EMBEDDED_NAME)
            health = "/health"
        elif engine == "vllm":
            if not model:
                raise _fail("--engine vllm needs --model (a Hugging Face id or a path)")
            cmd, health = vllm_command(model, port, served_name, max_num_seqs), "/health"
            if os.environ.get(api_key_env):
                env["VLLM_API_KEY"] = os.environ[api_key_env]
        else:
            raise _fail(f"unknown engine {engine!r}: use llama.cpp or vllm")
        if dry_run:
            console.print(shlex.join(cmd), soft_wrap=True)
            return
        server = ManagedServer(cmd, port, health, env=env, startup_timeout_s=1800)
        err.print(f"starting: {shlex.join(cmd)}", soft_wrap=True)
        with server:
            console.print(f"serving at {server.base_url} (Ctrl-C to stop)")
            try:
                while server.proc.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                err.print("stopping")
                return
        raise _fail(f"server exited with code {server.proc.returncode}", 1)
    except ServeError as e:
        raise _fail(str(e), 1) from None


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
