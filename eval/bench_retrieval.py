"""Embedders side by side on real texts, and the clean-sample index.

    python -m eval.bench_retrieval [--rows N] [--k 3]

Texts: every row of ``../shared/data/robustft-arc/noisy30.csv`` as the index embeds it
(question and options; synthetic sentences when the shared data is absent). Each embedder runs
in its own process, so its CPU (rusage) and peak RSS are its own:

- ``torch``: sentence-transformers on torch, the embedder before ONNX (only when installed);
- ``onnx-fp32`` / ``onnx-int8``: :class:`~robustft.retrieval.embedder.LocalEmbedder` (the
  model built from the packaged weights, one text per run, one thread);
- ``endpoint``: :class:`~robustft.retrieval.embedder.EndpointEmbedder` against the scripted
  server's ``/v1/embeddings`` (a hashed bag of words: measures our client's side only).

Neighbour agreement: recall@k of each embedder's k nearest neighbours (among the same texts)
against the float model's. Then the LanceDB index: build and batched k-NN search. Prints;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ARC = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "robustft-arc"
KINDS = ("torch", "onnx-fp32", "onnx-int8", "endpoint")


def texts(rows: int | None) -> list[str]:
    path = ARC / "noisy30.csv"
    if path.is_file():
        with path.open(newline="") as f:
            out = [f"{r['question']} " + " ".join(
                f"({chr(65 + i)}) {o}" for i, o in enumerate(json.loads(r["options"])))
                for r in csv.DictReader(f)]
    else:
        out = [f"Which statement about topic {i} is true? (A) one (B) two (C) three"
               for i in range(2000)]
    return out[:rows] if rows else out


def _embed_here(kind: str, items: list[str], out: Path, url: str | None) -> None:
    """In the child process: load the embedder, embed ``items``, save vectors + figures."""
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "torch":
        from sentence_transformers import SentenceTransformer

        from robustft.retrieval.embedder import default_embedder_path

        model = SentenceTransformer(default_embedder_path(), device="cpu")
        load = time.perf_counter() - t0
        t1, c1 = time.perf_counter(), time.process_time()
        vecs = model.encode(items, batch_size=64, normalize_embeddings=True)
    elif kind == "endpoint":
        from robustft.config import Config
        from robustft.llm.client import LLMClient
        from robustft.retrieval.embedder import make_embedder

        cfg = Config()
        cfg.retrieval.embedder, cfg.endpoint.base_url = "endpoint", url

        async def go():
            client = LLMClient(cfg.endpoint)
            try:
                return await make_embedder(cfg, client).aembed(items)
            finally:
                await client.aclose()
        load, t1, c1 = 0.0, t0, c0
        vecs = asyncio.run(go())
    else:
        from robustft.retrieval.embedder import LocalEmbedder

        embedder = LocalEmbedder(int8=kind == "onnx-int8")
        load = time.perf_counter() - t0
        t1, c1 = time.perf_counter(), time.process_time()
        vecs = embedder.embed(items)
    wall, cpu = time.perf_counter() - t1, time.process_time() - c1
    np.save(out / f"{kind}.npy", np.asarray(vecs, dtype=np.float32))
    (out / f"{kind}.json").write_text(json.dumps({
        "load_s": load, "wall_s": wall, "cpu_s": cpu,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def recall_at(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of ``b``'s k nearest neighbours (cosine, self excluded) that ``a`` also finds."""
    def top(v):
        s = v @ v.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top(a), top(b),
                                                                   strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, out, url = args.child
        _embed_here(kind, texts(args.rows), Path(out), None if url == "-" else url)
        return
    from eval.fast_server import serve_in_subprocess
    from robustft.retrieval.embedder import default_embedder_path, onnx_model_path

    for int8 in (False, True):  # built once, here: the children measure steady state
        onnx_model_path(Path(default_embedder_path()), int8)
    items = texts(args.rows)
    server, url = serve_in_subprocess(0.0)
    results = {}
    try:
        with tempfile.TemporaryDirectory() as d:
            for kind in KINDS:
                cmd = [sys.executable, "-m", "eval.bench_retrieval", "--child", kind, d,
                       url if kind == "endpoint" else "-"]
                if args.rows:
                    cmd += ["--rows", str(args.rows)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{kind}: skipped ({done.stderr.strip().splitlines()[-1]})")
                    continue
                results[kind] = (json.loads(Path(d, f"{kind}.json").read_text()),
                                 np.load(Path(d, f"{kind}.npy")))
            index_figures = _index(results["onnx-int8"][1], args.k) \
                if "onnx-int8" in results else None
    finally:
        server.terminate()
    ref = results.get("torch", results.get("onnx-fp32"))[1]
    n = len(items)
    print(f"{n} texts, {os.cpu_count()} cores; recall@{args.k} against the float MiniLM")
    print(f"{'embedder':<12}{'load s':>8}{'texts/s':>9}{'CPU ms/text':>12}{'RSS MiB':>9}"
          f"{f'recall@{args.k}':>10}")
    for kind, (fig, vecs) in results.items():
        rec = recall_at(vecs, ref, args.k) if kind != "endpoint" else float("nan")
        print(f"{kind:<12}{fig['load_s']:>8.1f}{n / fig['wall_s']:>9.0f}"
              f"{fig['cpu_s'] * 1000 / n:>12.2f}{fig['rss_mib']:>9.0f}{rec:>10.3f}")
    if index_figures:
        build, search = index_figures
        print(f"LanceDB: index {n} vectors {build:.2f} s; {n} k-NN queries batched "
              f"{search:.2f} s ({n / search:.0f}/s)")


def _index(vectors: np.ndarray, k: int) -> tuple[float, float]:
    from robustft.retrieval.index import CleanIndex
    from robustft.schemas import Sample

    samples = [Sample(id=f"s{i}", row=i + 1, source="bench", label="A", question=f"q{i}",
                      options=["a", "b"]) for i in range(len(vectors))]
    by_id = {s.id: v for s, v in zip(samples, vectors, strict=True)}
    with tempfile.TemporaryDirectory() as d:
        index = CleanIndex(Path(d) / "index", None)
        t = time.perf_counter()
        index.build(samples, by_id)
        build = time.perf_counter() - t
        t = time.perf_counter()
        index.prepare(samples, by_id, k)
        return build, time.perf_counter() - t


if __name__ == "__main__":
    main()
