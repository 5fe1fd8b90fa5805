"""Supervised fine-tuning on a run's ``sft.jsonl`` with TRL (LoRA through peft by default).

The examples are ``{"prompt", "completion"}`` pairs, so the loss covers the completion only,
and :mod:`robustft.evaluation` sends exactly the same prompt text. Models load from a Hugging
Face id or directory, or from a GGUF file dequantised to a dense, trainable model
(``GgufConfig(dequantize=True)``); ``embedded`` names the embedded Gemma-3-270M GGUF.
Needs the ``train`` extra (trl, peft, gguf, matplotlib).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from robustft.config import TrainConfig
from robustft.data.shapes import render_turns
from robustft.errors import TrainError as TrainError  # its home is the errors family


def resolve_model(ref: str) -> tuple[str, str | None]:
    """(directory or hub id, gguf file name or None) for a model reference."""
    if ref == "embedded":
        from robustft.serving.servers import embedded_model_path

        path = embedded_model_path()
        return str(path.parent), path.name
    p = Path(ref)
    if p.suffix.lower() == ".gguf":
        if not p.is_file():
            raise TrainError(f"{p}: GGUF file not found")
        return str(p.parent), p.name
    return ref, None


def load_model(ref: str, dtype: str = "float32"):
    """(model, tokenizer) from a hub id, a directory or a GGUF file (dequantised)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    where, gguf = resolve_model(ref)
    kw: dict[str, Any] = {"dtype": getattr(torch, dtype)}
    if gguf:
        kw.update(gguf_file=gguf, quantization_config=GgufConfig(dequantize=True))
    try:  # a hub id that does not exist, no network, a directory without weights
        tok = AutoTokenizer.from_pretrained(where, **({"gguf_file": gguf} if gguf else {}))
        model = AutoModelForCausalLM.from_pretrained(where, **kw)
    except OSError as e:
        raise TrainError(f"{ref}: cannot load the model: {e}") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def read_sft(path: Path) -> list[dict[str, str]]:
    """Prompt/completion pairs. A conversational row (``messages``, from a chat-shaped
    input) becomes the conversation before its last assistant turn as text (``Role: text``
    paragraphs, as the pipeline's prompts show it) and that turn as the completion, so any
    model trains on it, with or without a chat template."""
    rows = []
    if not path.is_file():
        raise TrainError(f"{path}: training data not found")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise TrainError(f"{path}:{n}: not JSON: {e.msg}") from None
                msgs = row.get("messages")
                if isinstance(msgs, list) and msgs and msgs[-1].get("role") == "assistant":
                    row = {"prompt": render_turns(msgs[:-1]) + "\n",
                           "completion": msgs[-1].get("content")}
                if not isinstance(row.get("prompt"), str) or not isinstance(
                        row.get("completion"), str):
                    raise TrainError(f"{path}:{n}: needs string 'prompt' and 'completion' "
                                     "(or 'messages' ending with an assistant turn)")
                rows.append({"prompt": row["prompt"], "completion": row["completion"]})
    if not rows:
        raise TrainError(f"{path}: no training examples")
    return rows


def _loss_plot(history: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if points:
        ax.plot(*zip(*points, strict=True), marker="o")
    ax.set(xlabel="step", ylabel="training loss", title="SFT loss")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def train(sft_path: str | Path, model_ref: str, output: str | Path, cfg: TrainConfig
          ) -> dict[str, Any]:
    """Fine-tune; writes adapter/ (or model/), merged/ on request, train_config.yaml,
    loss.png and train_metrics.json into ``output``. Returns the metrics."""
    try:
        import torch
        from datasets import Dataset
        from peft import LoraConfig
        from trl import SFTConfig, SFTTrainer
    except ImportError as e:
        raise TrainError("training needs the 'train' extra: pip install "
                         "'robustft[train]'") from e
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_sft(Path(sft_path))
    (out / "train_config.yaml").write_text(yaml.safe_dump(
        {"data": str(sft_path), "model": model_ref, **cfg.model_dump()}, sort_keys=False))
    model, tok = load_model(model_ref)
    gpu = torch.cuda.is_available() and cfg.device != "cpu"
    args = SFTConfig(
        output_dir=str(out / "checkpoints"), num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.scheduler, warmup_steps=cfg.warmup_ratio,
        max_length=cfg.max_length, use_cpu=not gpu, bf16=gpu and torch.cuda.is_bf16_supported(),
        fp16=False, activation_checkpointing=False, report_to="none", logging_steps=1,
        save_strategy="no", seed=cfg.seed, completion_only_loss=True,
        disable_tqdm=False)
    peft_config = (LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                              lora_dropout=cfg.lora_dropout,
                              target_modules=cfg.target_modules, task_type="CAUSAL_LM")
                   if cfg.lora else None)
    trainer = SFTTrainer(model=model, processing_class=tok,
                         train_dataset=Dataset.from_list(rows), args=args,
                         peft_config=peft_config)
    result = trainer.train()
    target = out / ("adapter" if cfg.lora else "model")
    trainer.save_model(str(target))
    tok.save_pretrained(str(target))
    if cfg.lora and cfg.merge:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(out / "merged"))
        tok.save_pretrained(str(out / "merged"))
    history = trainer.state.log_history
    _loss_plot(history, out / "loss.png")
    metrics = {"examples": len(rows), "steps": trainer.state.global_step,
               "train_loss": result.training_loss,
               "seconds": result.metrics.get("train_runtime"),
               "seconds_per_step": (result.metrics.get("train_runtime", 0.0)
                                    / max(1, trainer.state.global_step)),
               "losses": [h["loss"] for h in history if "loss" in h],
               "saved": str(target), "device": "cuda" if gpu else "cpu"}
    (out / "train_metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
