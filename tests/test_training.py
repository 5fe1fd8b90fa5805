"""TRL SFT with LoRA on CPU on a tiny model built offline, then evaluate with the adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="the 'train' extra is not installed")

from robustft.config import TrainConfig  # noqa: E402
from robustft.demo import DEMO_INPUT, DEMO_TRUTH  # noqa: E402
from robustft.training.train import TrainError, train  # noqa: E402

from .test_cli_e2e import run_cli  # noqa: E402


def tiny_model(path: Path, corpus: list[str]) -> Path:
    """A 2-layer Llama with a BPE tokenizer trained on ``corpus``: no download involved."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                 eos_token="</s>", pad_token="<pad>")
    cfg = LlamaConfig(vocab_size=len(hf), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=256, bos_token_id=hf.bos_token_id,
                      eos_token_id=hf.eos_token_id, pad_token_id=hf.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    hf.save_pretrained(path)
    return path


def sft_rows() -> list[dict]:
    truth = {json.loads(t)["id"]: json.loads(t)["answer"] for t in DEMO_TRUTH.open()}
    return [{"id": r["id"], "prompt": f"Question: {r['question']}\n",
             "completion": f"Answer: {truth[r['id']]}"}
            for r in map(json.loads, DEMO_INPUT.open())]


def test_lora_sft_changes_weights_then_evaluate_reloads_adapter(tmp_path):
    from safetensors.torch import load_file

    rows = sft_rows()
    model = tiny_model(tmp_path / "tiny", [r["prompt"] + r["completion"] for r in rows])
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = train(data, str(model), tmp_path / "out",
              TrainConfig(max_steps=4, batch_size=8, learning_rate=1e-3, max_length=64))
    assert m["steps"] == 4 and m["device"] == "cpu" and len(m["losses"]) == 4
    weights = load_file(tmp_path / "out" / "adapter" / "adapter_model.safetensors")
    lora_b = [w for k, w in weights.items() if "lora_B" in k]
    assert lora_b and any(float(w.abs().sum()) > 0 for w in lora_b)  # B starts at zero
    assert (tmp_path / "out" / "loss.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "train_metrics.json").read_text())["steps"] == 4

    res = run_cli("evaluate", "--model", str(model), "--adapter",
                  str(tmp_path / "out" / "adapter"), "--data", str(DEMO_INPUT), "--limit", "6",
                  "-o", str(tmp_path / "eval"), env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr[-2000:]
    preds = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").open()]
    metrics = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())
    assert len(preds) == 6 and metrics["n"] == 6 and "accuracy" in metrics
    assert all(set(p) >= {"id", "label", "prediction", "raw", "correct"} for p in preds)


def test_bad_training_data_names_file_and_line(tmp_path):
    bad = tmp_path / "sft.jsonl"
    bad.write_text('{"prompt": "q", "completion": "a"}\n{"prompt": 3}\n')
    with pytest.raises(TrainError, match=r"sft\.jsonl:2: needs string"):
        train(bad, "unused", tmp_path / "out", TrainConfig(max_steps=1))


def test_curate_train_evaluate_in_one_command(tmp_path, serve):
    from eval.scripted_server import mc_reply, target_question

    rows = [{"id": f"r{i}", "question": f"Is {i} even?", "options": ["yes", "no"],
             "answer": "A" if i % 2 == 0 else "B"} for i in range(8)]
    rows[3]["answer"] = "A"  # one flipped label
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    srv = serve(lambda b: mc_reply("A" if int(target_question(b).split()[1]) % 2 == 0 else "B",
                                   ["A", "B"]))
    model = tiny_model(tmp_path / "tiny", [f"Question: Is {i} even?\nA. yes\nB. no\nAnswer: A"
                                           for i in range(8)])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"endpoint: {{base_url: '{srv.base_url}', model: m}}\n"
                   "train: {max_steps: 2, batch_size: 4, max_length: 64}\n")
    run = tmp_path / "run"
    res = run_cli("curate", "-i", str(inp), "-o", str(run), "-c", str(cfg), "--train",
                  "--train-model", str(model), "--evaluate", str(inp), env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert (run / "model" / "adapter" / "adapter_config.json").is_file()
    assert (run / "model" / "loss.png").is_file()
    metrics = json.loads((run / "eval" / "eval_metrics.json").read_text())
    assert metrics["n"] == 8 and metrics["adapter"] == str(run / "model" / "adapter")


def test_evaluate_through_an_endpoint_sends_the_training_prompt(tmp_path, serve):
    from eval.scripted_server import Reply, target_question

    truth = {json.loads(t)["id"]: json.loads(t)["answer"] for t in DEMO_TRUTH.open()}
    by_q = {r["question"]: truth[r["id"]] for r in map(json.loads, DEMO_INPUT.open())}
    srv = serve(lambda b: Reply(f"Answer: {by_q[target_question(b)]}"))
    res = run_cli("evaluate", "--model", "served", "--base-url", srv.base_url, "--data",
                  str(DEMO_INPUT), "-o", str(tmp_path / "eval"), env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())
    # the demo file carries the noisy labels: a truthful model agrees with 45 of 65
    assert metrics["n"] == 65 and metrics["accuracy"] == pytest.approx(45 / 65)
    sent = {r["prompt"] for r in srv.requests}
    expected = {r["prompt"] for r in sft_rows()}  # the same text training saw
    assert sent == expected and all(r["stop"] == ["\n"] for r in srv.requests)
