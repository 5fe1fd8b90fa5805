"""Our pipeline against the reference implementation's behaviour (one request at a time), on
the embedded llama-server with 4 slots.

    python -m eval.bench_reference [--input FILE] [--limit 100] [--slots 4]

1. ``curate`` runs on the input (fresh run directory and cache, base-model prompts, concurrency
   16) and records every request it made.
2. The same requests (same messages, temperature, max_tokens, logprobs and stop sequences) are
   sent again one at a time in input order, in free text, as the official RobustFT code does.
3. Exactly our requests (JSON-schema answers where ours had them) once more, as many in flight
   as the server has slots, no pipeline: what the server can give on this very mix of requests
   (short, prefill-bound replies scale with slots differently from ``eval.bench_slots``' long
   generations) — the limit ours is held to.
Each pass runs on a freshly started server: llama-server keeps prompts in a RAM cache
(``--cache-ram``, 8 GiB by default), and a replay after an earlier pass of the same requests
was up to 25% faster than a first pass.
Prints samples/s of each and the ratios; asserts nothing. The default input is the shipped demo
(65 rows; ``--input`` takes any file, e.g. ARC's noisy30.csv with ``--limit 100``).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from robustft.config import Config
from robustft.data.files import file_format, load_samples, write_rows
from robustft.demo import DEMO_INPUT
from robustft.graph.runner import curate
from robustft.llm.prompt_files import builtin_dir, load_prompts
from robustft.methods.parsing import answer_format
from robustft.schemas import Sample
from robustft.serving.servers import EMBEDDED_NAME, embedded_server
from robustft.store.runstore import RunStore


def replay(url: str, cfg: Config, run: Path, samples: list[Sample], in_flight: int = 1,
           structured: bool = False) -> tuple[float, int]:
    """Re-send every call of ``run``, sample by sample in input order, ``in_flight`` at a
    time; ``structured``: with the JSON schema where the run's call had one (else free text
    ended by the prompt's stop sequences). Returns (seconds, calls)."""
    prompts = load_prompts(cfg.prompts_dir)
    store = RunStore.reader(run)
    calls = [(c, s.letters) for s in samples for _, c in store.calls(s.id)]
    store.close()
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)

    def send(item) -> None:
        c, letters = item
        rc, prompt = cfg.role(c.role), prompts[c.prompt]
        extra = {"logprobs": True, "top_logprobs": rc.top_logprobs} if rc.top_logprobs else {}
        if structured and c.structured:
            extra["response_format"] = answer_format(prompt.structured, letters)
        elif prompt.stop:
            extra["stop"] = list(prompt.stop)
        client.chat.completions.create(model=EMBEDDED_NAME, messages=c.messages,
                                       temperature=rc.temperature, max_tokens=rc.max_tokens,
                                       **extra)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(send, calls))
    return time.perf_counter() - t0, len(calls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=str(DEMO_INPUT))
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    cfg = Config(concurrency=args.concurrency, prompts_dir=str(builtin_dir() / "base"))
    with tempfile.TemporaryDirectory() as d:
        samples, _, _ = load_samples(args.input, cfg.data)
        samples = samples[:args.limit]
        inp = Path(d) / f"in{Path(args.input).suffix}"
        write_rows(inp, [s.raw for s in samples], file_format(Path(args.input)))

        def server():  # each pass on a fresh server: its RAM prompt cache starts empty
            return embedded_server(slots=args.slots, log_path=Path(d) / "server.log")

        with server() as srv:
            cfg.endpoint.base_url, cfg.endpoint.model = srv.base_url, EMBEDDED_NAME
            t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            summary = asyncio.run(curate(cfg, inp, Path(d) / "run"))
            ours, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
            client_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        with server() as srv:
            ref, n_calls = replay(srv.base_url, cfg, Path(d) / "run", samples)
        with server() as srv:
            limit, _ = replay(srv.base_url, cfg, Path(d) / "run", samples, args.slots,
                              structured=True)
    n = len(samples)
    print(f"{n} samples, {n_calls} calls ({summary['calls']} in the run), embedded "
          f"Gemma-3-270M, {args.slots} slots, concurrency {args.concurrency}")
    print(f"{'':<34}{'seconds':>9}{'samples/s':>11}")
    print(f"{'robustft curate (whole run)':<34}{ours:>9.1f}{n / ours:>11.3f}"
          f"   (client process CPU {client_cpu:.1f} s)")
    print(f"{'one request at a time (calls only)':<34}{ref:>9.1f}{n / ref:>11.3f}")
    print(f"{f'ours, {args.slots} in flight (calls only)':<34}{limit:>9.1f}{n / limit:>11.3f}")
    print(f"speed-up over one at a time: {ref / ours:.2f}x; the server's limit on these "
          f"requests: {ref / limit:.2f}x; ours reaches {limit / ours:.0%} of it (the replays "
          "exclude embedding and selection, ours includes everything)")


if __name__ == "__main__":
    main()
