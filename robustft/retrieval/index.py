"""Clean-sample index: a LanceDB table in the run directory, searched with the embedder.

Vectors come from :mod:`robustft.retrieval.embedder` (embedded while detection runs); the
queries of all noisy samples are embedded and searched in batches (:meth:`CleanIndex.prepare`:
one multi-vector LanceDB search per 1,024 queries, measured ~14× faster per query than single
searches at 10k rows) before the per-sample relabel graphs read their neighbours.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

os.environ.setdefault("LANCEDB_LOG", "error")  # its Rust log otherwise warns on every create

from robustft.retrieval.embedder import Embedder
from robustft.schemas import Neighbour, Sample

if TYPE_CHECKING:
    import pyarrow as pa

TABLE = "clean"
BUILD_ROWS = 10_000  # rows per Arrow batch written to the table


def import_lancedb() -> None:
    """Import LanceDB (~1.2 s of CPU): a run does it on a thread while detection is in
    flight, not at the barrier where every call waits for the index."""
    import lancedb  # noqa: F401


class CleanIndex:
    """LanceDB table of clean samples (id, question, options, label, vector)."""

    def __init__(self, directory: Path, embedder: Embedder):
        import lancedb

        self.directory = directory
        self.embedder = embedder
        self.db = lancedb.connect(str(directory))
        self.table = None
        self._prepared: dict[str, list[Neighbour]] = {}

    def build(self, clean: Sequence[Sample], vectors: dict[str, np.ndarray]) -> int:
        """(Re)create the table from the clean samples and their vectors (id -> vector),
        streamed ``BUILD_ROWS`` at a time (one Arrow copy of every vector cost ~140 MiB more
        at 100k rows); returns the number indexed."""
        return self.build_from(
            index_batch(part, np.stack([vectors[s.id] for s in part]))
            for part in (clean[i:i + BUILD_ROWS] for i in range(0, len(clean), BUILD_ROWS)))

    def build_from(self, batches: Iterable[pa.RecordBatch]) -> int:
        """(Re)create the table from :func:`index_batch` batches, streamed (:meth:`build`'s,
        or those Ray workers wrote); returns the number indexed."""
        import pyarrow as pa

        batches = iter(batches)
        first = next(batches, None)
        if first is None:
            self.table = None
            return 0
        reader = pa.RecordBatchReader.from_batches(first.schema,
                                                   itertools.chain([first], batches))
        self.table = self.db.create_table(TABLE, data=reader, mode="overwrite")
        return self.table.count_rows()

    def open(self) -> CleanIndex:
        """Use the table already in the directory (built by another process)."""
        try:
            self.table = self.db.open_table(TABLE)
        except ValueError:  # no table: nothing was clean
            self.table = None
        return self

    def prepare(self, queries: Sequence[Sample], vectors: dict[str, np.ndarray], k: int,
                chunk: int = 1024, exclude_self: bool = False,
                exclude: Mapping[str, str] | None = None) -> None:
        """Search all query samples (vectors: id -> vector) in batches, ahead of the
        per-sample graphs. ``exclude_self``: queries that are in the index (probes) never get
        themselves as a neighbour; ``exclude``: query id -> the indexed id it never gets (a
        canary's source row)."""
        if self.table is None or self.table.count_rows() == 0:
            return
        exclude = exclude or {}
        extra = int(exclude_self) + int(bool(exclude))
        for start in range(0, len(queries), chunk):
            part = queries[start:start + chunk]
            found = self.search_batch(np.stack([vectors[s.id] for s in part]), k + extra)
            self._prepared.update({s.id: [n for n in f if n.id not in (s.id, exclude.get(s.id))
                                          ][:k] for s, f in zip(part, found, strict=True)})

    def search_batch(self, vectors: np.ndarray, k: int) -> list[list[Neighbour]]:
        """One multi-vector search: the k nearest clean samples of each vector, nearest first."""
        rows = (self.table.search(list(vectors)).distance_type("cosine").limit(k)
                .select(["id", "question", "options", "label", "_distance"]).to_list())
        found: list[list[Neighbour]] = [[] for _ in range(len(vectors))]
        for r in rows:
            found[r.get("query_index", 0)].append(_neighbour(r))
        return [sorted(f, key=lambda n: n.distance) for f in found]

    def _search(self, vector: np.ndarray, k: int) -> list[Neighbour]:
        if self.table is None or self.table.count_rows() == 0:
            return []
        rows = (self.table.search(vector).distance_type("cosine").limit(k)
                .select(["id", "question", "options", "label", "_distance"]).to_list())
        return [_neighbour(r) for r in rows]

    async def neighbours(self, sample: Sample, k: int) -> list[Neighbour]:
        """The k nearest clean samples (cosine distance, nearest first): prepared in a batch,
        or searched now for a sample that was not prepared."""
        if sample.id in self._prepared:
            return self._prepared.pop(sample.id)[:k]
        vector = (await self.embedder.aembed([sample.embed_text()]))[0]
        return await asyncio.to_thread(self._search, vector, k)


def index_batch(samples: Sequence[Sample], vectors: np.ndarray) -> pa.RecordBatch:
    """Rows of the clean-sample table: id, question, options, label, vector."""
    import pyarrow as pa

    return pa.RecordBatch.from_pydict({
        "id": pa.array([s.id for s in samples], pa.string()),
        "question": pa.array([s.question for s in samples], pa.string()),
        "options": pa.array([s.options for s in samples], pa.list_(pa.string())),
        "label": pa.array([s.label for s in samples], pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1]),
    })


def _neighbour(r: dict) -> Neighbour:
    return Neighbour(id=r["id"], question=r["question"], options=list(r["options"] or []),
                     label=r["label"], distance=float(r["_distance"]))
