"""Input encodings: UTF-8 with or without a BOM and UTF-16 / UTF-32 with a BOM read with no
setting; undecodable bytes stop the run naming file, line and byte offset; data.encoding reads
any codec, and curated.<ext> is written back in the input's encoding, BOM and line endings,
its bytes those of the input but for the audited responses."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from eval.scripted_server import mc_reply, target_question
from robustft.config import ConfigError, DataConfig, load_config
from robustft.data.files import InputFileError, load_samples

from .test_cli_e2e import run_cli

TRUTH = {  # question -> (true letter, options); accents throughout
    "Quelle est la capitale de la France ?": ("A", ["Paris", "Lyon", "Nice"]),
    "Quel fruit est jaune et courbé ?": ("B", ["pomme", "banane", "cerise"]),
    "Combien font deux et deux ?": ("C", ["trois", "cinq", "quatre"]),
    "Quelle boisson est faite de café ?": ("A", ["expresso", "thé", "lait"]),
    "Où vit un poisson ?": ("B", ["désert", "mer", "forêt"]),
    "Quel animal miaule ?": ("C", ["chien", "vache", "chat"]),
}
FLIPPED = {"Quel fruit est jaune et courbé ?": "A", "Où vit un poisson ?": "C"}
COLUMNS = ["id", "question", "options", "answer", "note"]


def rows(truth: bool = False) -> list[dict]:
    return [{"id": f"q{i}", "question": q, "options": json.dumps(opts, ensure_ascii=False),
             "answer": a if truth else FLIPPED.get(q, a), "note": "à réviser, déjà vu"}
            for i, (q, (a, opts)) in enumerate(TRUTH.items())]


def csv_text(data: list[dict], line_end: str = "\n") -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, COLUMNS, lineterminator=line_end)
    w.writeheader()
    w.writerows(data)
    return out.getvalue()


def jsonl_text(data: list[dict]) -> str:
    return "".join(json.dumps({**r, "options": json.loads(r["options"])}, ensure_ascii=False)
                   + "\n" for r in data)


def script(body: dict):
    answer, opts = TRUTH[target_question(body)]
    return mc_reply(answer, ["A", "B", "C"][: len(opts)], confidence=0.9)


@pytest.mark.parametrize("codec,bom", [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"),
                                       ("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"),
                                       ("utf-32-le", b"\xff\xfe\x00\x00")])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_utf8_and_bom_files_read_with_no_setting(tmp_path, codec, bom, fmt):
    text = {"csv": csv_text(rows()), "jsonl": jsonl_text(rows()),
            "json": json.dumps([json.loads(x) for x in jsonl_text(rows()).splitlines()],
                               ensure_ascii=False)}[fmt]
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(bom + text.encode(codec))
    samples, errors, shape = load_samples(path, DataConfig())
    assert not errors and [s.id for s in samples] == [f"q{i}" for i in range(6)]
    assert samples[1].question == "Quel fruit est jaune et courbé ?"
    assert samples[4].options == ["désert", "mer", "forêt"]
    assert (shape.encoding, shape.bom) == (codec, bool(bom))


def test_latin1_stops_naming_file_line_and_byte(tmp_path):
    data = csv_text(rows()).encode("latin-1")
    path = tmp_path / "latin1.csv"
    path.write_bytes(data)
    at = next(i for i, b in enumerate(data) if b >= 0x80)  # the first non-ASCII byte
    line = data[:at].count(b"\n") + 1
    with pytest.raises(InputFileError) as e:
        load_samples(path, DataConfig())
    assert str(e.value).startswith(f"{path}: line {line}, byte offset {at}: bytes "
                                   f"{data[at]:02x} are not valid utf-8")
    assert "data.encoding: latin-1" in str(e.value)
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(jsonl_text(rows()).encode("latin-1"))
    with pytest.raises(InputFileError, match=r"latin1\.jsonl: line 1, byte offset \d+"):
        load_samples(jsonl, DataConfig())
    samples, errors, shape = load_samples(jsonl, DataConfig(encoding="latin-1"))
    assert len(samples) == 6 and not errors and shape.encoding == "latin-1"
    assert samples[3].options[1] == "thé"


def test_an_unknown_encoding_is_a_config_error(tmp_path):
    (tmp_path / "c.yaml").write_text("data: {encoding: klingon}\n")
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        load_config(tmp_path / "c.yaml")


def _curate(tmp_path: Path, inp: Path, url: str, *extra: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("selection: {beta: 1.0}\n"  # every relabel kept: every row is in curated
                   + "".join(f"{line}\n" for line in extra))
    return run_cli("curate", "-i", str(inp), "-o", str(tmp_path / "run"), "--base-url", url,
                   "--model", "m", "-c", str(cfg))


def test_latin1_csv_curates_with_data_encoding_and_is_written_back_in_latin1(tmp_path, serve):
    srv = serve(script)
    inp = tmp_path / "latin1.csv"
    inp.write_bytes(csv_text(rows()).encode("latin-1"))
    res = _curate(tmp_path, inp, srv.base_url)
    message = " ".join(res.stderr.split())
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{inp}: line 2, byte offset" in message and "data.encoding: latin-1" in message
    assert not srv.requests  # stopped before any call

    res = _curate(tmp_path, inp, srv.base_url, "data: {encoding: latin-1}")
    assert res.returncode == 0, res.stderr
    curated = (tmp_path / "run" / "curated.csv").read_bytes()
    # the input's bytes, Latin-1 and \n line endings kept, but for the two corrected answers
    assert curated == csv_text(rows(truth=True)).encode("latin-1")
    assert curated != inp.read_bytes()


def test_utf16_csv_is_written_back_in_utf16_with_its_bom(tmp_path, serve):
    srv = serve(script)
    inp = tmp_path / "utf16.csv"
    inp.write_bytes(b"\xff\xfe" + csv_text(rows(), "\r\n").encode("utf-16-le"))
    res = _curate(tmp_path, inp, srv.base_url)
    assert res.returncode == 0, res.stderr
    curated = (tmp_path / "run" / "curated.csv").read_bytes()
    assert curated == b"\xff\xfe" + csv_text(rows(truth=True), "\r\n").encode("utf-16-le")
    decisions = (tmp_path / "run" / "decisions.csv").read_text(encoding="utf-8")
    assert "courbé" not in decisions and decisions.count("relabeled-kept") == 2  # ours: UTF-8
