"""The clean-sample index: real MiniLM embeddings in a real LanceDB directory."""

import asyncio

from robustft.retrieval.embedder import Embedder
from robustft.retrieval.index import CleanIndex
from robustft.schemas import Sample


def _s(i: int, q: str) -> Sample:
    return Sample(id=f"s{i}", row=i, source="t", question=q, options=["yes", "no"], label="A")


CLEAN = [_s(0, "What do plants need to grow?"), _s(1, "Which planet is closest to the sun?"),
         _s(2, "How many legs does an insect have?"), _s(3, "What gas do plants take in?"),
         _s(4, "Which planet has rings?")]
QUERIES = [_s(10, "Which planet is nearest to the sun?"), _s(11, "Do plants need sunlight?"),
           _s(12, "How many legs do beetles have?")]


def test_batched_prepare_matches_single_searches(tmp_path):
    index = CleanIndex(tmp_path / "index", Embedder())
    assert index.build(CLEAN) == 5
    vectors = index.embedder.embed([q.embed_text() for q in QUERIES])
    single = [[n.id for n in index._search(v, 2)] for v in vectors]
    assert single[0][0] == "s1" and single[2][0] == "s2"
    for chunk in (1, 2, 1024):
        index.prepare(QUERIES, 2, chunk=chunk)

        async def read():
            return [[n.id for n in await index.neighbours(q, 2)] for q in QUERIES]
        assert asyncio.run(read()) == single
    # not prepared: searched on demand
    assert [n.id for n in asyncio.run(index.neighbours(QUERIES[0], 1))] == ["s1"]


def test_empty_index_gives_no_neighbours(tmp_path):
    index = CleanIndex(tmp_path / "index", Embedder())
    index.build([])
    index.prepare(QUERIES, 3)
    assert asyncio.run(index.neighbours(QUERIES[0], 3)) == []
