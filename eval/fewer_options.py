"""The same multiple-choice rows with one wrong option removed (e.g. ARC with three options).

    python -m eval.fewer_options --clean ../shared/data/robustft-arc/labeled.csv \\
        --noisy ../shared/data/robustft-arc/noisy70.csv [--noisy ...] --out /tmp/arc3

Each row loses one option that is neither its true answer (``--clean``) nor, in any of the
``--noisy`` files given, its noisy label (seeded per row id, so every noise file of one call
drops the same option where it can); the remaining options keep their order and are re-lettered
A, B, C, ...; the true and noisy labels follow their options. A row with no removable option
(every other option is some file's label) or with a label that is no option's letter (the
run makes it an error row, as it does the original) is left whole and counted. Writes
``labeled.csv`` and each noisy file under its own name into ``--out`` (keep it outside the
repository: the shared data is never copied into it). Columns: ``id``, ``question``,
``answer`` (a letter), ``options`` (a JSON list), as in the RobustFT benchmark files; the rows
must be in the same order in every file.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _read(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def removable(n_options: int, keep: set[int]) -> list[int]:
    """Indices of options that may go: not one to keep, and at least two options left."""
    return [] if n_options <= 2 else [i for i in range(n_options) if i not in keep]


def drop_option(options: list[str], labels: list[str], drop: int) -> tuple[list[str], list[str]]:
    """``options`` without index ``drop``; each label (a letter) re-lettered to follow its
    option."""
    rest = [o for i, o in enumerate(options) if i != drop]
    moved = [LETTERS[i - (i > drop)] for i in (LETTERS.index(x) for x in labels)]
    return rest, moved


def fewer(clean: list[dict[str, str]], noisy: list[list[dict[str, str]]], seed: int
          ) -> tuple[list[dict[str, str]], list[list[dict[str, str]]], int]:
    """(clean rows, each noisy file's rows, rows left whole) with one wrong option dropped."""
    out_clean: list[dict[str, str]] = []
    out_noisy: list[list[dict[str, str]]] = [[] for _ in noisy]
    whole = 0
    for j, row in enumerate(clean):
        others = [rows[j] for rows in noisy]
        for o in others:
            if o["id"] != row["id"]:
                raise ValueError(f"row {j + 2}: id {o['id']!r} in a noisy file, {row['id']!r} "
                                 "in the clean file: the files must list the same rows in order")
        options = json.loads(row["options"])
        labels = [row["answer"], *(o["answer"] for o in others)]
        valid = all(x in LETTERS[:len(options)] for x in labels)
        can = removable(len(options), {LETTERS.index(x) for x in labels}) if valid else []
        if not can:
            whole += 1
            out_clean.append(dict(row))
            for out, o in zip(out_noisy, others, strict=True):
                out.append(dict(o))
            continue
        drop = random.Random(f"{seed}|{row['id']}").choice(can)
        rest, moved = drop_option(options, labels, drop)
        text = json.dumps(rest)
        out_clean.append({**row, "answer": moved[0], "options": text})
        for out, o, label in zip(out_noisy, others, moved[1:], strict=True):
            out.append({**o, "answer": label, "options": text})
    return out_clean, out_noisy, whole


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clean", required=True, help="CSV with the true labels")
    ap.add_argument("--noisy", required=True, action="append", help="noisy CSV (repeatable)")
    ap.add_argument("--out", required=True, help="output directory (outside the repository)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    clean, whole_noisy = _read(a.clean), [_read(p) for p in a.noisy]
    out_clean, out_noisy, whole = fewer(clean, whole_noisy, a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "labeled.csv", out_clean)
    for path, rows in zip(a.noisy, out_noisy, strict=True):
        _write(out / Path(path).name, rows)
    counts: dict[int, int] = {}
    for r in out_clean:
        n = len(json.loads(r["options"]))
        counts[n] = counts.get(n, 0) + 1
    print(f"{len(out_clean)} rows to {out}: options per row "
          + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
          + f"; {whole} left whole (no removable option)")


if __name__ == "__main__":
    main()
