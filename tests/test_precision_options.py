"""eval.fewer_options: the same rows with one wrong option removed, on hand-made files."""

import csv
import json

import pytest

from eval.fewer_options import drop_option, fewer, main


def _row(rid, answer, options):
    return {"id": rid, "question": f"q {rid}?", "answer": answer, "options": json.dumps(options)}


def test_drop_option_reletters_labels():
    # drop C of A-D: D becomes C, A and B stay
    assert drop_option(["w", "x", "y", "z"], ["A", "D", "B"], 2) == (["w", "x", "z"],
                                                                     ["A", "C", "B"])


def test_never_drops_the_truth_or_a_noisy_label(tmp_path):
    clean = [_row(f"r{i}", "B", ["a", "b", "c", "d"]) for i in range(50)]
    noisy = [_row(f"r{i}", "D" if i % 2 else "B", ["a", "b", "c", "d"]) for i in range(50)]
    out_clean, (out_noisy,), whole = fewer(clean, [noisy], seed=0)
    assert whole == 0
    for c, n, n0 in zip(out_clean, out_noisy, noisy, strict=True):
        opts = json.loads(c["options"])
        assert len(opts) == 3 and c["options"] == n["options"]
        letters = "ABC"
        assert opts[letters.index(c["answer"])] == "b"  # the truth's text, re-lettered
        assert opts[letters.index(n["answer"])] == ("d" if n0["answer"] == "D" else "b")
    # seeded per row: both free options (a, c; or a, c, d) are dropped somewhere
    dropped = {({"a", "b", "c", "d"} - set(json.loads(c["options"]))).pop() for c in out_clean}
    assert dropped <= {"a", "c", "d"} and {"a", "c"} <= dropped


def test_rows_left_whole_and_files_written(tmp_path):
    clean = [_row("x", "A", ["a", "b", "c"]), _row("y", "A", ["a", "b"]),
             _row("z", "A", ["a", "b", "c"])]
    noisy = [_row("x", "C", ["a", "b", "c"]), _row("y", "B", ["a", "b"]),
             _row("z", "D", ["a", "b", "c"])]  # D is no option: left whole, as the run sees it
    for name, rows in (("labeled.csv", clean), ("noisy70.csv", noisy)):
        with (tmp_path / name).open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    main(["--clean", str(tmp_path / "labeled.csv"), "--noisy", str(tmp_path / "noisy70.csv"),
          "--out", str(tmp_path / "out")])
    got = {n: list(csv.DictReader((tmp_path / "out" / n).open(newline="")))
           for n in ("labeled.csv", "noisy70.csv")}
    # x: only b may go -> [a, c], truth A, noisy C -> B; y has two options; z is left whole
    assert [json.loads(r["options"]) for r in got["labeled.csv"]] == [["a", "c"], ["a", "b"],
                                                                      ["a", "b", "c"]]
    assert [r["answer"] for r in got["noisy70.csv"]] == ["B", "B", "D"]
    with pytest.raises(ValueError, match="same rows in order"):
        fewer(clean, [list(reversed(noisy))], seed=0)
