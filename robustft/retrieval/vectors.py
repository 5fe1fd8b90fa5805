"""A block's embedded samples on disk (``vectors.parquet`` in the block's store directory):
written once its detection is done, read by the index barrier (the clean rows of every
block, streamed into one LanceDB table) and by the block's relabel step (its queries)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from robustft.retrieval.index import index_batch
from robustft.schemas import Sample

if TYPE_CHECKING:
    import pyarrow as pa

VECTORS = "vectors.parquet"


def write_vectors(directory: Path, samples: Sequence[Sample], vectors: dict[str, np.ndarray],
                  verdicts: Sequence[str]) -> None:
    """The index rows of ``samples`` (id, question, options, label, vector) with each one's
    checker verdict, written whole (a temporary file renamed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not samples:
        return
    batch = index_batch(samples, np.stack([vectors[s.id] for s in samples]))
    table = pa.Table.from_batches([batch]).append_column(
        "verdict", pa.array([str(v) for v in verdicts], pa.string()))
    tmp = directory / (VECTORS + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(directory / VECTORS)


def read_vectors(directory: Path, ids: Iterable[str]) -> dict[str, np.ndarray]:
    """id -> vector of the samples ``ids`` that the block's file holds."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path, wanted = directory / VECTORS, pa.array(list(ids), pa.string())
    if not path.is_file() or not len(wanted):
        return {}
    t = pq.read_table(path, columns=["id", "vector"])
    t = t.filter(pc.is_in(t.column("id"), value_set=wanted))
    ids = t.column("id").to_pylist()
    vecs = t.column("vector").combine_chunks().flatten().to_numpy().reshape(len(ids), -1)
    return dict(zip(ids, vecs, strict=True))


def clean_batches(directories: Iterable[Path], batch_size: int = 4096
                  ) -> Iterator[pa.RecordBatch]:
    """The index rows of the clean samples of every block's file, streamed in block order."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for d in directories:
        path = d / VECTORS
        if not path.is_file():
            continue
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
            batch = batch.filter(pc.equal(batch.column("verdict"), "clean"))
            if batch.num_rows:
                yield batch.drop_columns(["verdict"])
