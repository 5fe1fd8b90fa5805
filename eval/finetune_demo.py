"""Before/after accuracy of a model fine-tuned on noisy vs curated demo labels.

    python -m eval.finetune_demo --run runs/demo [--model embedded] [--epochs 2] [--out runs/ft]

Test set: the demo's questions with their *true* answers (the training questions themselves,
so this measures whether noisy labels teach wrong facts, not generalisation). Prints accuracy
of the base model, of LoRA trained on all noisy labels, and of LoRA trained on the curated
sft.jsonl of a run, plus seconds per training step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robustft.config import DataConfig, TrainConfig
from robustft.data.files import load_samples
from robustft.demo import DEMO_INPUT, DEMO_TRUTH
from robustft.llm.prompt_files import load_prompts
from robustft.pipeline.outputs import sft_example
from robustft.training.evaluate import predict_local, write_results
from robustft.training.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", type=Path, required=True, help="a curated demo run directory")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=Path("runs/finetune_demo"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    truth = {r["id"]: r["answer"] for r in map(json.loads, DEMO_TRUTH.open())}
    rows = [json.loads(x) for x in DEMO_INPUT.open()]
    test = args.out / "test_true.jsonl"
    test.write_text("".join(json.dumps({**r, "answer": truth[r["id"]]}) + "\n" for r in rows))
    samples, _, _ = load_samples(test, DataConfig())
    noisy_samples, _, _ = load_samples(DEMO_INPUT, DataConfig())
    prompt = load_prompts()["sft"]
    noisy_sft = args.out / "sft_noisy.jsonl"
    noisy_sft.write_text("".join(json.dumps(sft_example(prompt, s, s.label)) + "\n"
                                 for s in noisy_samples))
    cfg = TrainConfig(epochs=args.epochs, max_length=128)
    table = []
    base = write_results(args.out / "eval_base", predict_local(args.model, None, samples, prompt),
                         {"model": args.model})
    table.append(("base model", "-", base["accuracy"], "-"))
    for name, data in (("noisy labels", noisy_sft), ("curated labels", args.run / "sft.jsonl")):
        tm = train(data, args.model, args.out / name.replace(" ", "_"), cfg)
        adapter = str(args.out / name.replace(" ", "_") / "adapter")
        m = write_results(args.out / f"eval_{name.replace(' ', '_')}",
                          predict_local(args.model, adapter, samples, prompt), {})
        table.append((f"LoRA on {name}", tm["examples"], m["accuracy"],
                      f"{tm['seconds_per_step']:.2f}"))
    print(f"{'model':<24} {'train ex.':>9} {'accuracy':>9} {'s/step':>7}")
    for name, n, acc, sps in table:
        print(f"{name:<24} {n!s:>9} {acc:>9.3f} {sps:>7}")


if __name__ == "__main__":
    main()
