"""``robustft`` command line.

Exit codes: 0 success; 1 unexpected failure; 2 bad usage, config, prompt or input file;
3 the run completed but some rows ended as errors (see decisions.csv); 4 a --max-calls /
--max-tokens budget stopped the run (rerun to continue); 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.syntax import Syntax
from rich.table import Table

from .config import Config, ConfigError, RunOptions, load_config
from .demo import DEMO_INPUT, score_run
from .io import InputFileError, load_samples
from .launch import (
    console,
    dry_run_table,
    err,
    exit_for,
    fail,
    load_for_retry,
    on_sigterm,
    run_curate_cli,
)
from .prompts import PromptError, builtin_dir, load_prompt, load_prompts
from .runstore import RunStore
from .serve import (
    EMBEDDED_NAME,
    ManagedServer,
    ServeError,
    embedded_model_path,
    free_port,
    llama_server_binary,
    llama_server_command,
    vllm_command,
)
from .tracing import sample_story, summary_table
from .viewdata import sample_detail

app = typer.Typer(help="Noise-robust LLM fine-tuning: find, relabel or drop wrong labels.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
prompts_app = typer.Typer(help="List, show and check prompt files.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")


@app.command()
def curate(
    input: Annotated[Path | None, typer.Option("--input", "-i",
                                               help="JSONL, CSV or Parquet file.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run directory.")
                      ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config.")] = None,
    prompts: Annotated[Path | None, typer.Option(help="Prompt override directory.")] = None,
    base_url: Annotated[str | None, typer.Option(
        help="Endpoint for all roles; comma-separated URLs are replicas of one model.")] = None,
    model: Annotated[str | None, typer.Option(help="Model for all roles.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Samples in flight.")] = None,
    slots: Annotated[int, typer.Option(help="Embedded server slots (no endpoint).")] = 4,
    cache: Annotated[Path | None, typer.Option(help="Request cache file shared across runs "
                                               "(default: RUN/cache.sqlite).")] = None,
    max_calls: Annotated[int | None, typer.Option(help="Stop (resumably) after this many "
                                                  "endpoint calls.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Stop (resumably) after this many "
                                                   "prompt+completion tokens.")] = None,
    retry_errors: Annotated[Path | None, typer.Option(
        help="Rerun only the rows of this run directory that ended as endpoint errors.")
                            ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print planned calls and estimated tokens; "
                                          "call nothing.")] = False,
    method: Annotated[str, typer.Option(help="robustft (default) or clear.")] = "robustft",
    train_after: Annotated[bool, typer.Option("--train", help="Fine-tune on the curated "
                                              "sft.jsonl afterwards (RUN/model).")] = False,
    train_model: Annotated[str, typer.Option(help="Model to fine-tune with --train (hub id, "
                                             "directory, .gguf, or 'embedded').")
                           ] = "embedded",
    evaluate_on: Annotated[Path | None, typer.Option("--evaluate", help="Test split to score "
                                                     "the tuned model on (RUN/eval).")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS", help="Run on a Ray cluster (extra 'ray'): 'local' starts "
        "one on this machine, 'auto' joins the running one, or ray://HOST:PORT.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="--ray: worker actors per stage (each "
                                         "runs --concurrency samples at once).")] = 2,
    block_rows: Annotated[int, typer.Option(min=1, help="--ray: input rows per block (one "
                                            "shard, one Ray task).")] = 1000,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Detect noisy labels, relabel them, select by entropy; write the curated dataset.

    With no endpoint configured, the embedded llama-server starts for the run. Rerunning the
    same command on the same run directory continues it; completed calls come from the cache.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    try:
        if retry_errors is not None:
            cfg, saved_input = load_for_retry(retry_errors, config)
            input, output = input or saved_input, output or retry_errors
        else:
            cfg = load_config(config)
    except ConfigError as e:
        raise fail(str(e)) from None
    if input is None or output is None:
        raise fail("--input and --output are required (or --retry-errors RUN)")
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
    if dry_run:
        try:
            return dry_run_table(cfg, input, method)
        except (InputFileError, PromptError) as e:
            raise fail(str(e)) from None
    if method not in ("robustft", "clear"):
        raise fail(f"unknown method {method!r}: use robustft or clear")
    options = RunOptions(cache_path=cache, max_calls=max_calls, max_tokens=max_tokens,
                         retry_errors=retry_errors is not None, method=method, ray=ray,
                         workers=workers, block_rows=block_rows)
    summary = run_curate_cli(cfg, input, output, slots, options)
    if train_after:
        _train(output / "sft.jsonl", train_model, output / "model", cfg)
        if evaluate_on is not None:
            _evaluate(train_model, str(output / "model" / "adapter"), evaluate_on,
                      output / "eval", cfg, None, None)
    exit_for(summary, output)


@app.command()
def demo(output: Annotated[Path, typer.Option("--output", "-o")] = Path("runs/demo"),
         slots: Annotated[int, typer.Option(help="Embedded server slots.")] = 4,
         method: Annotated[str, typer.Option(help="robustft or clear.")] = "robustft") -> None:
    """Curate the shipped demo (country capitals, 30% noisy labels) on the embedded model and
    score detection against the demo's ground truth."""
    cfg = Config()
    for r in cfg.roles.values():  # the embedded server is the endpoint, whatever the env says
        r.base_url = None
    summary = run_curate_cli(cfg, DEMO_INPUT, output, slots, RunOptions(method=method))
    s = score_run(output)
    t = Table("detection precision", "recall", "F1", "noise base rate", "input label acc.",
              "curated label acc.", "kept", title="demo vs ground truth")
    t.add_row(f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}",
              f"{s['base_rate']:.3f}", f"{s['input_accuracy']:.3f}",
              f"{s['curated_accuracy']:.3f}", str(s["kept"]))
    console.print(t)
    (output / "demo_scores.json").write_text(json.dumps(s, indent=1))
    exit_for(summary, output)


@app.command()
def serve(
    engine: Annotated[str, typer.Option(help="llama.cpp (CPU) or vllm (GPU).")] = "llama.cpp",
    model: Annotated[str | None, typer.Option(help="GGUF path (llama.cpp; default: the "
                                              "embedded Gemma-3-270M) or HF id/path (vllm).")
                     ] = None,
    slots: Annotated[int, typer.Option(help="llama.cpp parallel slots.")] = 4,
    port: Annotated[int, typer.Option(help="Port (0: a free one).")] = 0,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 for other nodes "
                                      "(e.g. Ray workers) to reach it.")] = "127.0.0.1",
    served_name: Annotated[str | None, typer.Option(help="vllm: served model name.")] = None,
    max_num_seqs: Annotated[int, typer.Option(help="vllm: concurrent sequences.")] = 256,
    api_key_env: Annotated[str, typer.Option(help="vllm: variable holding the API key.")
                           ] = "OPENAI_API_KEY",
    dry_run: Annotated[bool, typer.Option(help="Print the command line only.")] = False,
) -> None:
    """Serve a model (on 127.0.0.1 unless --host) until Ctrl-C / SIGTERM; prints the base
    URL."""
    signal.signal(signal.SIGTERM, on_sigterm)
    port = port or free_port()
    env: dict[str, str] = {}
    try:
        if engine == "llama.cpp":
            path = Path(model) if model else embedded_model_path()
            cmd = llama_server_command(llama_server_binary(), path, port, slots,
                                       passthrough=model is None,
                                       alias=None if model else EMBEDDED_NAME, host=host)
            health = "/health"
        elif engine == "vllm":
            if not model:
                raise fail("--engine vllm needs --model (a Hugging Face id or a path)")
            cmd, health = vllm_command(model, port, served_name, max_num_seqs,
                                       host=host), "/health"
            if os.environ.get(api_key_env):
                env["VLLM_API_KEY"] = os.environ[api_key_env]
        else:
            raise fail(f"unknown engine {engine!r}: use llama.cpp or vllm")
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
        raise fail(f"server exited with code {server.proc.returncode}", 1)
    except ServeError as e:
        raise fail(str(e), 1) from None


def _train(data: Path, model: str, output: Path, cfg: Config) -> dict:
    from .training import TrainError, train

    err.print(f"fine-tuning {model} on {data} -> {output}")
    try:
        m = train(data, model, output, cfg.train)
    except (TrainError, OSError, ValueError) as e:
        raise fail(str(e)) from None
    console.print(f"trained {m['steps']} steps on {m['examples']} examples, final loss "
                  f"{m['losses'][-1] if m['losses'] else float('nan'):.4f}, "
                  f"{m['seconds_per_step']:.2f} s/step ({m['device']}); saved {m['saved']}; "
                  f"loss curve {output / 'loss.png'}")
    return m


def _evaluate(model: str, adapter: str | None, data: Path, output: Path, cfg: Config,
              base_url: str | None, limit: int | None) -> dict:
    import asyncio

    from .evaluation import predict_endpoint, predict_local, write_results
    from .launch import RichReporter, progress_columns

    samples, errors, _ = load_samples(data, cfg.data)
    samples = samples[:limit] if limit else samples
    prompt = load_prompts(cfg.prompts_dir)["sft"]
    with Progress(*progress_columns(), console=err) as progress:
        rep = RichReporter(progress)
        rep.start("evaluate", len(samples))
        tick = lambda: rep.advance("evaluate")  # noqa: E731
        if base_url:
            preds = asyncio.run(predict_endpoint(base_url, model, samples, prompt,
                                                 cfg.endpoint.api_key_env, advance=tick))
        else:
            preds = predict_local(model, adapter, samples, prompt, advance=tick)
    m = write_results(output, preds, {"model": model, "adapter": adapter, "data": str(data),
                                      "endpoint": base_url, "invalid_rows": len(errors)})
    console.print(f"accuracy {m['accuracy']:.3f} on {m['n']} rows ({m['unparsed']} unparsed); "
                  f"predictions in {output / 'predictions.jsonl'}")
    return m


@app.command()
def train(data: Annotated[Path, typer.Option(help="sft.jsonl from a run.")],
          model: Annotated[str, typer.Option(help="Hub id, directory, .gguf, or 'embedded'.")],
          output: Annotated[Path, typer.Option("--output", "-o")],
          config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
          max_steps: Annotated[int | None, typer.Option(help="Override train.max_steps.")
                               ] = None) -> None:
    """Fine-tune with TRL SFT (LoRA by default) on prompt/completion pairs."""
    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise fail(str(e)) from None
    if max_steps:
        cfg.train.max_steps = max_steps
    _train(data, model, output, cfg)


@app.command()
def evaluate(model: Annotated[str, typer.Option(help="Hub id, directory, .gguf, 'embedded', "
                                                "or the served model name with --base-url.")],
             data: Annotated[Path, typer.Option(help="Labelled test split.")],
             output: Annotated[Path, typer.Option("--output", "-o")] = Path("runs/eval"),
             adapter: Annotated[str | None, typer.Option(help="LoRA adapter directory.")
                                ] = None,
             base_url: Annotated[str | None, typer.Option(help="Score through this "
                                                          "endpoint's /v1/completions.")] = None,
             config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
             limit: Annotated[int | None, typer.Option(help="First N rows only.")] = None
             ) -> None:
    """Accuracy of a model on a test split (same prompt and parser as the pipeline)."""
    try:
        cfg = load_config(config)
        _evaluate(model, adapter, data, output, cfg, base_url, limit)
    except (ConfigError, InputFileError, PromptError) as e:
        raise fail(str(e)) from None


@app.command()
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


@app.command()
def summary(run: Path) -> None:
    """Counts by fate, calls and tokens of a run."""
    try:
        store = RunStore.open_existing(run)
    except FileNotFoundError as e:
        raise fail(str(e)) from None
    console.print(summary_table(store.totals()))


@app.command()
def view(run: Path, port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free)."
                                                      )] = 8765) -> None:
    """Browse a run in the web browser: summary, filterable sample table, agent timelines."""
    from .viewer import Viewer

    try:
        viewer = Viewer(run, port)
    except (FileNotFoundError, OSError) as e:
        raise fail(str(e)) from None
    console.print(f"viewing [bold]{run}[/bold] at {viewer.url}  (Ctrl-C to stop)")
    try:
        viewer.serve_forever()
    except KeyboardInterrupt:
        pass


@app.command()
def report(run: Path, html: Annotated[Path, typer.Option("--html", help="Output file.")],
           limit: Annotated[int, typer.Option(help="Most changed samples to include.")] = 5000,
           ) -> None:
    """One self-contained HTML file: the run summary and every sample whose label changed."""
    from .viewer import write_report

    try:
        n = write_report(run, html, limit)
    except FileNotFoundError as e:
        raise fail(str(e)) from None
    console.print(f"wrote {html} ({n} changed samples, {html.stat().st_size / 1e6:.1f} MB)")


@prompts_app.command("list")
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


@prompts_app.command("show")
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


@prompts_app.command("check")
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


if __name__ == "__main__":
    app()
