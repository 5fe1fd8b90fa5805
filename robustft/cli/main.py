"""``robustft`` command line.

Exit codes (:mod:`robustft.errors`): 0 success; 1 unexpected failure (a bug: with its
traceback); 2 bad usage, config, prompt, input file, endpoint (pre-flight) or run directory
(e.g. held by another writer); 3 the run completed but some rows ended as errors (see
decisions.csv); 4 a call, token or cost budget stopped the run; 5 an endpoint stopped
answering for client.outage_timeout; 6 the disk is full; 130 interrupted. After 4, 5, 6 and
130 the same command continues the run.
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
from rich.table import Table

from robustft.cli import finetune, reading
from robustft.cli.launch import (
    console,
    dry_run_table,
    err,
    exit_for,
    fail,
    failure,
    load_for_retry,
    on_sigterm,
    run_curate_cli,
)
from robustft.config import Config, RunOptions, load_config, resolved_endpoint
from robustft.demo import DEMOS, score_run
from robustft.errors import RobustftError
from robustft.serving.servers import (
    EMBEDDED_NAME,
    ManagedServer,
    ServeError,
    embedded_model_path,
    free_port,
    llama_server_binary,
    llama_server_command,
    needs_embedded,
    vllm_command,
)


class Robustft(typer.Typer):
    """The ``robustft`` Typer app: an error of the :mod:`robustft.errors` family that a
    command did not report itself becomes ``error: message`` and its exit code; any other
    exception is a bug and ends with its traceback (exit 1)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except RobustftError as e:
            raise SystemExit(failure(e).exit_code) from None


app = Robustft(help="Noise-robust LLM fine-tuning: find, relabel or drop wrong labels.",
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
    call_budget: Annotated[int | None, typer.Option(min=0, help="Stop (resumably) after "
                                                    "this many endpoint calls.")] = None,
    token_budget: Annotated[int | None, typer.Option(min=0, help="Stop (resumably) after this "
                                                     "many prompt+completion tokens, all calls "
                                                     "together (a reply's length is "
                                                     "roles.<role>.max_tokens).")] = None,
    cost_budget: Annotated[float | None, typer.Option(min=0, help="Stop (resumably) once the "
                                                      "calls cost this much at the config's "
                                                      "prices.")] = None,
    max_calls: Annotated[int | None, typer.Option(hidden=True)] = None,  # deprecated names
    max_tokens: Annotated[int | None, typer.Option(hidden=True)] = None,
    max_cost: Annotated[float | None, typer.Option(hidden=True)] = None,
    retry_errors: Annotated[Path | None, typer.Option(
        help="Rerun only the rows of this run directory that ended as endpoint errors.")
                            ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print planned calls and estimated tokens; "
                                          "call nothing.")] = False,
    batch: Annotated[bool, typer.Option(help="Send the calls through the endpoint's Batch API "
                                        "(/v1/files + /v1/batches), one batch per round; "
                                        "rerun to resume polling.")] = False,
    batch_files: Annotated[bool, typer.Option(help="Offline batches: write each round's "
                                              "requests as a batch file for `vllm run-batch`, "
                                              "stop (exit 4), read its output on the rerun."
                                              )] = False,
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
    pilot: Annotated[int | None, typer.Option(
        min=1, metavar="N", help="Curate N random rows end to end (in RUN/pilot), print the "
        "estimated noise rate, detection recall, the share kept and the calls, tokens, cost "
        "and time projected to the whole file, then stop; the full run reuses its calls "
        "from the cache.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Detect noisy labels, relabel them, select by entropy; write the curated dataset.

    With no endpoint configured, the embedded llama-server starts for the run. Rerunning the
    same command on the same run directory continues it; completed calls come from the cache.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    if retry_errors is not None:
        cfg, saved_input = load_for_retry(retry_errors, config)
        input, output = input or saved_input, output or retry_errors
    else:
        cfg = load_config(config)
    if input is None or output is None:
        raise fail("--input and --output are required (or --retry-errors RUN)")
    cfg.override(base_url, model, concurrency, prompts)
    if dry_run:
        return dry_run_table(cfg, input, method, batch or batch_files)
    if method not in ("robustft", "clear"):
        raise fail(f"unknown method {method!r}: use robustft or clear")
    if batch and (ray is not None or needs_embedded(cfg)):
        raise fail("--batch needs an endpoint with the Batch API (/v1/files + /v1/batches) "
                   "and one process: not the embedded server, not --ray")
    if batch_files and (ray is not None or needs_embedded(cfg)
                        or not resolved_endpoint(cfg, "direct")[1]):
        raise fail("--batch-files needs --model (the model the batch runner serves) and "
                   "--base-url (where requests a batch file leaves unanswered go), in one "
                   "process: not --ray")
    if pilot is not None and (ray is not None or batch or batch_files or train_after
                              or retry_errors is not None):
        raise fail("--pilot runs in one process and stops after the pilot: not with --ray, "
                   "--batch, --batch-files, --train or --retry-errors")
    call_budget = _renamed_budget(call_budget, max_calls, "--call-budget", "--max-calls")
    token_budget = _renamed_budget(token_budget, max_tokens, "--token-budget", "--max-tokens")
    cost_budget = _renamed_budget(cost_budget, max_cost, "--cost-budget", "--max-cost")
    options = RunOptions(cache_path=cache, call_budget=call_budget, token_budget=token_budget,
                         cost_budget=cost_budget, retry_errors=retry_errors is not None,
                         method=method, ray=ray, workers=workers, block_rows=block_rows,
                         batch="files" if batch_files else "api" if batch else None,
                         pilot=pilot)
    options.budgets(cfg)  # a cost budget needs prices (a ConfigError: exit 2)
    summary = run_curate_cli(cfg, input, output, slots, options)
    if pilot is not None:
        return  # the pilot's figures are printed; exit 0
    if train_after:
        finetune.run_train(output / "sft.jsonl", train_model, output / "model", cfg)
        if evaluate_on is not None:
            finetune.run_evaluate(train_model, str(output / "model" / "adapter"), evaluate_on,
                      output / "eval", cfg, None, None)
    exit_for(summary, output)


def _renamed_budget(value: float | None, old_value: float | None, new: str, old: str
                    ) -> float | None:
    """A budget option, or its deprecated --max-* name with a deprecation line."""
    if old_value is None:
        return value
    if value is not None:
        raise fail(f"give {new} only: {old} is its deprecated name")
    note = (" (a whole-run budget, all calls together; a reply's length is "
            "roles.<role>.max_tokens in the config)" if old == "--max-tokens" else "")
    err.print(f"[yellow]deprecated:[/yellow] {old} is now {new}{note}; {old} will be removed "
              "in the next release")
    return old_value


@app.command()
def demo(output: Annotated[Path, typer.Option("--output", "-o")] = Path("runs/demo"),
         slots: Annotated[int, typer.Option(help="Embedded server slots.")] = 4,
         method: Annotated[str, typer.Option(help="robustft or clear.")] = "robustft",
         data: Annotated[str, typer.Option(help="capitals (question/answer rows) or chat "
                                           "(TRL messages, full-sentence answers).")
                         ] = "capitals") -> None:
    """Curate a shipped demo (country capitals, 30% noisy labels) on the embedded model and
    score detection against the demo's ground truth."""
    if data not in DEMOS:
        raise fail(f"unknown demo data {data!r}: use {' or '.join(DEMOS)}")
    inp, truth = DEMOS[data]
    cfg = Config()
    for r in cfg.roles.values():  # the embedded server is the endpoint, whatever the env says
        r.base_url = None
    if data == "chat":  # the 270M base model cannot judge sentences (README, "The demo")
        cfg.detect.match = "exact"
        err.print("[dim]chat demo: full-sentence answers compared as normalised text "
                  "(detect.match: exact)[/dim]")
    summary = run_curate_cli(cfg, inp, output, slots, RunOptions(method=method))
    s = score_run(output, truth)
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


# Fine-tuning and inspection commands live in their own modules; all wiring is here.
app.command()(finetune.train)
app.command()(finetune.evaluate)
app.command()(reading.trace)
app.command()(reading.summary)
app.command()(reading.view)
app.command()(reading.export)
app.command()(reading.report)
prompts_app.command("list")(reading.prompts_list)
prompts_app.command("show")(reading.prompts_show)
prompts_app.command("check")(reading.prompts_check)


if __name__ == "__main__":
    app()
