"""Accuracy on a labelled test split, with the same prompt text as training (``sft.yaml``) and
the same answer parser as the pipeline.

The prediction is the first line the model generates (the training completion is one line,
``Answer: X``), parsed by the pipeline's parser. Two ways to get predictions: in process with
transformers (a local model, optionally with a LoRA adapter), or through an OpenAI-compatible
``/v1/completions`` endpoint (e.g. vLLM serving base + adapter), which receives the raw prompt
text exactly as in training.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustft.llm.prompt_files import Prompt
from robustft.methods.matching import answers_match
from robustft.methods.parsing import parse_answer
from robustft.pipeline.outputs import sft_example
from robustft.schemas import Sample

Advance = Callable[[], None]


def _prompt_text(prompt: Prompt, s: Sample) -> str:
    return sft_example(prompt, s, s.label)["prompt"]


def _record(s: Sample, text: str, threshold: float) -> dict[str, Any]:
    parsed = parse_answer(text, s.letters)
    return {"id": s.id, "label": s.label, "prediction": parsed.answer, "raw": text,
            "correct": answers_match(parsed.answer, s.label, s.is_mc, threshold)}


def predict_local(model_ref: str, adapter: str | None, samples: list[Sample], prompt: Prompt,
                  max_new_tokens: int = 16, batch_size: int = 8, threshold: float = 0.8,
                  advance: Advance = lambda: None) -> list[dict[str, Any]]:
    """Greedy predictions in process (transformers, plus peft for an adapter)."""
    import torch

    from robustft.training.train import load_model

    model, tok = load_model(model_ref)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    tok.padding_side = "left"
    out = []
    for i in range(0, len(samples), batch_size):
        batch = samples[i:i + batch_size]
        enc = tok([_prompt_text(prompt, s) for s in batch], return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        for s, ids in zip(batch, gen[:, enc["input_ids"].shape[1]:], strict=True):
            text = tok.decode(ids, skip_special_tokens=True).strip().split("\n")[0]
            out.append(_record(s, text, threshold))
            advance()
    return out


async def predict_endpoint(base_url: str, model: str, samples: list[Sample], prompt: Prompt,
                           api_key_env: str = "OPENAI_API_KEY", max_new_tokens: int = 16,
                           concurrency: int = 16, threshold: float = 0.8,
                           advance: Advance = lambda: None) -> list[dict[str, Any]]:
    """Greedy predictions from ``/v1/completions`` with the raw training prompt text."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "none",
                                max_retries=3, timeout=120)
    sem = asyncio.Semaphore(concurrency)

    async def one(s: Sample) -> dict[str, Any]:
        async with sem:
            r = await client.completions.create(model=model, prompt=_prompt_text(prompt, s),
                                                max_tokens=max_new_tokens, temperature=0,
                                                stop=["\n"])
        advance()
        return _record(s, r.choices[0].text if r.choices else "", threshold)

    try:
        return list(await asyncio.gather(*(one(s) for s in samples)))
    finally:
        await client.close()


def write_results(out: Path, predictions: list[dict[str, Any]], meta: dict[str, Any]
                  ) -> dict[str, Any]:
    """predictions.jsonl + eval_metrics.json; returns the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "predictions.jsonl").open("w") as f:
        for p in predictions:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    n = len(predictions)
    metrics = {**meta, "n": n, "accuracy": sum(p["correct"] for p in predictions) / n if n else
               0.0, "unparsed": sum(p["prediction"] is None for p in predictions)}
    (out / "eval_metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
