"""Embedding and retrieval throughput of the clean-sample index.

    python -m eval.bench_retrieval [--clean 10000] [--queries 1000] [--k 3]

Indexes ``--clean`` samples (ARC questions from ../shared/data/robustft-arc when present,
each with a numbered variant suffix to reach the count; synthetic sentences otherwise) with
the local MiniLM embedder into LanceDB, then runs ``--queries`` k-NN searches one query at a
time and batched the way the relabel stage does (:meth:`CleanIndex.prepare`). Prints samples/s
per step; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

from robustft.retrieval.embedder import Embedder
from robustft.retrieval.index import CleanIndex
from robustft.schemas import Sample

ARC = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "robustft-arc"


def base_rows() -> list[tuple[str, list[str]]]:
    path = ARC / "labeled.csv"
    if path.is_file():
        with path.open(newline="") as f:
            return [(r["question"], json.loads(r["options"])) for r in csv.DictReader(f)]
    return [(f"Which statement about topic {i} is true?", [f"option {j} of {i}" for j in "abcd"])
            for i in range(500)]


def samples(n: int, offset: int = 0) -> list[Sample]:
    rows = base_rows()
    out = []
    for i in range(n):
        q, opts = rows[(i + offset) % len(rows)]
        out.append(Sample(id=f"s{offset + i}", row=i + 1, source="bench", label="A",
                          question=f"{q} (variant {(i + offset) // len(rows)})", options=opts))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clean", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=3)
    args = ap.parse_args()
    clean, queries = samples(args.clean), samples(args.queries, offset=args.clean)
    t = time.perf_counter()
    embedder = Embedder()
    load = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        index = CleanIndex(Path(d) / "index", embedder)
        t = time.perf_counter()
        index.build(clean)
        build = time.perf_counter() - t
        t = time.perf_counter()
        vectors = embedder.embed([q.embed_text() for q in queries])
        embed_q = time.perf_counter() - t
        t = time.perf_counter()
        for v in vectors:
            index._search(v, args.k)
        single = time.perf_counter() - t
        t = time.perf_counter()
        batched = [n for i in range(0, len(vectors), 1024)
                   for n in index.search_batch(vectors[i:i + 1024], args.k)]
        search = time.perf_counter() - t
        assert all(len(n) == args.k for n in batched)
    print(f"{'step':<40}{'seconds':>9}{'samples/s':>11}")
    print(f"{'load MiniLM':<40}{load:>9.1f}{'':>11}")
    print(f"{f'embed + index {args.clean} clean (LanceDB)':<40}{build:>9.1f}"
          f"{args.clean / build:>11.1f}")
    print(f"{f'embed {args.queries} queries (one batch)':<40}{embed_q:>9.1f}"
          f"{args.queries / embed_q:>11.1f}")
    print(f"{f'k-NN, k={args.k}, one search per query':<40}{single:>9.1f}"
          f"{args.queries / single:>11.1f}")
    print(f"{f'k-NN, k={args.k}, batched per 1,024 queries':<40}{search:>9.1f}"
          f"{args.queries / search:>11.1f}")


if __name__ == "__main__":
    main()
