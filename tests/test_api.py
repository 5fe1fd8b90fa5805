"""The Python API: robustft.curate on a list of dicts, a pandas DataFrame and a
datasets.Dataset, inside a running event loop too, and resume through the API."""

from __future__ import annotations

import asyncio

import pytest

import robustft
from robustft.config import Config

from .test_shapes_e2e import truthful_script

TRUTH = {"2+1?": (0, ["3", "5", "8"]), "2+3?": (1, ["3", "5", "8"]),
         "4+4?": (2, ["3", "5", "8"]), "1+2?": (0, ["3", "5", "8"])}


def _rows() -> list[dict]:
    """The Hub layout; the last answer is wrong (index 1 instead of 0)."""
    return [{"id": f"h{i}", "question": q, "choices": o, "answer": (a + (i == 3)) % 3}
            for i, (q, (a, o)) in enumerate(TRUTH.items())]


def test_list_of_dicts_and_resume(tmp_path, serve):
    srv = serve(truthful_script(TRUTH))
    kw = {"output": tmp_path / "run", "base_url": srv.base_url, "model": "m",
          "config": Config(selection={"beta": 1.0})}
    result = robustft.curate(_rows(), **kw)
    assert result.run_dir == tmp_path / "run" and result.shape.answer_encoding == "index"
    assert result.curated == [{**r, "answer": TRUTH[r["question"]][0]} for r in _rows()]
    assert [(d["id"], d["fate"], d["original"], d["final"]) for d in result.decisions] == [
        ("h0", "clean", "A", "A"), ("h1", "clean", "B", "B"), ("h2", "clean", "C", "C"),
        ("h3", "relabeled-kept", "B", "A")]
    assert result.summary["fates"] == {"clean": 3, "relabeled-kept": 1}
    sent = len(srv.requests)
    again = robustft.curate(_rows(), **kw)  # the same data: the run resumes, nothing is sent
    assert len(srv.requests) == sent and again.curated == result.curated


def test_dataframe_and_dataset_come_back_as_themselves(tmp_path, serve):
    pd = pytest.importorskip("pandas")
    datasets = pytest.importorskip("datasets")
    srv = serve(truthful_script(TRUTH))
    kw = {"base_url": srv.base_url, "model": "m",
          "config": Config(selection={"beta": 1.0})}
    frame = robustft.curate(pd.DataFrame(_rows()), output=tmp_path / "df", **kw).curated
    assert isinstance(frame, pd.DataFrame)
    assert frame["answer"].tolist() == [0, 1, 2, 0] and list(frame.columns) == [
        "id", "question", "choices", "answer"]
    ds = robustft.curate(datasets.Dataset.from_list(_rows()), output=tmp_path / "ds",
                         **kw).curated
    assert isinstance(ds, datasets.Dataset) and ds["answer"] == [0, 1, 2, 0]


def test_inside_a_running_event_loop(tmp_path, serve):
    srv = serve(truthful_script(TRUTH))
    kw = {"base_url": srv.base_url, "model": "m",
          "config": Config(selection={"beta": 1.0})}

    async def notebook_cell():
        a = await robustft.acurate(_rows(), output=tmp_path / "a", **kw)
        b = robustft.curate(_rows(), output=tmp_path / "b", **kw)  # sync call, loop running
        return a, b

    a, b = asyncio.run(notebook_cell())
    assert a.curated == b.curated and a.summary["fates"] == b.summary["fates"]


def test_bad_data_type_is_refused(tmp_path):
    with pytest.raises(TypeError, match="list of dicts"):
        robustft.curate([1, 2], output=tmp_path / "x", base_url="http://127.0.0.1:9/v1")


def test_a_curation_run_never_imports_torch(tmp_path):
    """Curation is torch-free: a whole run with the local embedder (in a fresh interpreter,
    where no other test imported torch) leaves torch and sentence-transformers unloaded."""
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import sys, robustft
from eval.scripted_server import ScriptedServer
from robustft.config import Config
from tests.test_api import _rows, TRUTH
from tests.test_shapes_e2e import truthful_script
with ScriptedServer(truthful_script(TRUTH)) as srv:
    r = robustft.curate(_rows(), output={str(tmp_path / "run")!r}, base_url=srv.base_url,
                        model="m", config=Config(selection={{"beta": 1.0}}))
assert r.summary["fates"] == {{"clean": 3, "relabeled-kept": 1}}, r.summary
assert "onnxruntime" in sys.modules
print(sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
