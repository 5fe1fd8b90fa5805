"""``robustft train`` and ``robustft evaluate``, and the same steps after ``curate --train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from robustft.cli.launch import console, err
from robustft.config import Config, load_config


def run_train(data: Path, model: str, output: Path, cfg: Config) -> dict:
    from robustft.training.train import train

    err.print(f"fine-tuning {model} on {data} -> {output}")
    m = train(data, model, output, cfg.train)  # a TrainError: reported by the command line
    console.print(f"trained {m['steps']} steps on {m['examples']} examples, final loss "
                  f"{m['losses'][-1] if m['losses'] else float('nan'):.4f}, "
                  f"{m['seconds_per_step']:.2f} s/step ({m['device']}); saved {m['saved']}; "
                  f"loss curve {output / 'loss.png'}")
    return m


def run_evaluate(model: str, adapter: str | None, data: Path, output: Path, cfg: Config,
              base_url: str | None, limit: int | None) -> dict:
    import asyncio

    from robustft.cli.launch import RichReporter, progress_columns
    from robustft.data.files import load_samples
    from robustft.llm.prompt_files import load_prompts
    from robustft.training.evaluate import predict_endpoint, predict_local, write_results

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


def train(data: Annotated[Path, typer.Option(help="sft.jsonl from a run.")],
          model: Annotated[str, typer.Option(help="Hub id, directory, .gguf, or 'embedded'.")],
          output: Annotated[Path, typer.Option("--output", "-o")],
          config: Annotated[Path | None, typer.Option("--config", "-c")] = None,
          max_steps: Annotated[int | None, typer.Option(help="Override train.max_steps.")
                               ] = None) -> None:
    """Fine-tune with TRL SFT (LoRA by default) on prompt/completion pairs."""
    cfg = load_config(config)
    if max_steps:
        cfg.train.max_steps = max_steps
    run_train(data, model, output, cfg)


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
    run_evaluate(model, adapter, data, output, load_config(config), base_url, limit)
