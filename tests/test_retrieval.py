"""The clean-sample index and the embedders: MiniLM on ONNX Runtime (float and int8) checked
against sentence-transformers' vectors, /v1/embeddings of a real local HTTP server, a real
LanceDB directory."""

import asyncio

import numpy as np
import pytest

from eval.scripted_server import ScriptedServer, hashed_vector, parity
from robustft.config import Config
from robustft.llm.cache import RequestCache
from robustft.llm.client import LLMClient
from robustft.retrieval.embedder import LocalEmbedder, make_embedder, vectors_of
from robustft.retrieval.index import CleanIndex
from robustft.schemas import Sample


def _s(i: int, q: str) -> Sample:
    return Sample(id=f"s{i}", row=i, source="t", question=q, options=["yes", "no"], label="A")


CLEAN = [_s(0, "What do plants need to grow?"), _s(1, "Which planet is closest to the sun?"),
         _s(2, "How many legs does an insect have?"), _s(3, "What gas do plants take in?"),
         _s(4, "Which planet has rings?")]
QUERIES = [_s(10, "Which planet is nearest to the sun?"), _s(11, "Do plants need sunlight?"),
           _s(12, "How many legs do beetles have?")]

# sentence-transformers 6.2 (torch) on the packaged MiniLM: the first six components
REFERENCE = {"Which planet is closest to the sun?":
             [0.07182, 0.07807, -0.05941, 0.02355, 0.04475, -0.02455],
             "Do plants need sunlight? (A) yes (B) no":
             [-0.02891, 0.07606, 0.01805, 0.04005, 0.04243, 0.02747]}


@pytest.fixture(scope="module")
def embedder():
    return LocalEmbedder()


def test_float_graph_reproduces_sentence_transformers(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTFT_CACHE", str(tmp_path))
    fp32 = LocalEmbedder(int8=False)
    vecs = fp32.embed(list(REFERENCE))
    assert np.allclose(vecs[:, :6], np.array(list(REFERENCE.values())), atol=2e-4)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert list((tmp_path / "embedders").glob("*-fp32.onnx"))  # built once, in the cache


def test_int8_graph_stays_close_and_batches_do_not_change_vectors(embedder):
    texts = [*REFERENCE, *(q.embed_text() for q in QUERIES), "a " * 400]  # one truncated
    full = embedder.embed(texts)
    ref = LocalEmbedder(int8=False).embed(list(REFERENCE))
    assert (full[:2] * ref).sum(1).min() > 0.97
    one_by_one = np.stack([embedder.embed([t])[0] for t in texts])
    assert np.allclose(full, one_by_one, atol=1e-5)  # padding never leaks into a vector
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_batched_prepare_matches_single_searches(tmp_path, embedder):
    index = CleanIndex(tmp_path / "index", embedder)
    assert index.build(CLEAN, asyncio.run(vectors_of(embedder, CLEAN))) == 5
    vectors = asyncio.run(vectors_of(embedder, QUERIES))
    single = [[n.id for n in index._search(vectors[q.id], 2)] for q in QUERIES]
    assert single[0][0] == "s1" and single[2][0] == "s2"
    for chunk in (1, 2, 1024):
        index.prepare(QUERIES, vectors, 2, chunk=chunk)

        async def read():
            return [[n.id for n in await index.neighbours(q, 2)] for q in QUERIES]
        assert asyncio.run(read()) == single
    # not prepared: embedded and searched on demand
    assert [n.id for n in asyncio.run(index.neighbours(QUERIES[0], 1))] == ["s1"]


def test_empty_index_gives_no_neighbours(tmp_path, embedder):
    index = CleanIndex(tmp_path / "index", embedder)
    index.build([], {})
    index.prepare(QUERIES, {}, 3)
    assert asyncio.run(index.neighbours(QUERIES[0], 3)) == []


def test_endpoint_embeddings_batched_cached_and_retried(tmp_path):
    from eval.scripted_server import Fault

    cfg = Config()
    cfg.retrieval.embedder, cfg.retrieval.batch_size, cfg.endpoint.backoff_s = "endpoint", 2, 0
    texts = [q.embed_text() for q in [*CLEAN, *QUERIES]]
    with ScriptedServer(parity, models=["scripted"]) as server:  # the model: its only one
        cfg.endpoint.base_url = server.base_url
        server.faults.append(Fault(503))  # the first request fails once, then is retried

        async def go(cache):
            client = LLMClient(cfg.endpoint, cache)
            try:
                return await make_embedder(cfg, client).aembed(texts), client.budget.calls
            finally:
                await client.aclose()

        cache = RequestCache(tmp_path / "cache.sqlite")
        vecs, calls = asyncio.run(go(cache))
        sent = [r for r in server.requests if "input" in r]
        assert calls == 4 and len(sent) == 5  # 8 texts, 2 per request; one retry
        assert all(len(r["input"]) <= 2 for r in sent)
        want = np.array([hashed_vector(t) for t in texts], dtype=np.float32)
        assert np.allclose(vecs, want, atol=1e-6)
        again, calls = asyncio.run(go(cache))  # every vector from the cache
        assert calls == 0 and len([r for r in server.requests if "input" in r]) == 5
        assert np.array_equal(again, vecs)
        cache.close()


def test_the_built_model_is_keyed_by_content_not_by_file_times(tmp_path, monkeypatch):
    """A reinstall (same weights, new file times) reuses the cached build; changed weights
    get their own."""
    import os
    import shutil

    from robustft.retrieval.embedder import default_embedder_path, onnx_model_path

    monkeypatch.setenv("ROBUSTFT_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    shutil.copytree(default_embedder_path(), model)
    first = onnx_model_path(model, int8=False)
    for name in ("config.json", "model.safetensors"):
        os.utime(model / name, ns=(1, 1))
    assert onnx_model_path(model, int8=False) == first
    with open(model / "config.json", "a") as f:
        f.write("\n")
    assert onnx_model_path(model, int8=False) != first
    assert len(list((tmp_path / "cache" / "embedders").glob("*.onnx"))) == 2
