"""The run directory's SQLite store: one row per input row, one row per agent call.

Each sample is written (and committed) as soon as it finishes a stage, so a run directory is
always queryable and a rerun can skip finished work. Layout of a run directory::

    run.sqlite         samples + calls (the traces), queryable with any SQLite client
    config.yaml        config snapshot (no secrets: keys are read from the environment)
    prompts.json       prompt name -> content hash used by this run
    index/             LanceDB table of clean samples
    cache.sqlite       per-request cache of successful LLM replies (or --cache PATH)
    curated.<ext>      curated dataset in the input's format
    sft.jsonl          prompt/completion pairs for SFT
    decisions.csv      one row per input row: fate and why
    summary.json       counts by fate, calls, tokens

A run made with ``curate --ray`` is sharded (:mod:`robustft.shards`): ``run.sqlite`` holds
every sample's record and the calls stay in ``shards/NNNNN/run.sqlite``; :meth:`RunStore.calls`
and :meth:`RunStore.totals` read them there, so every reader works on both layouts.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from robustft.config import load_config, prices_of
from robustft.errors import RunDirError, writes_to
from robustft.methods.cost import cost_by_role
from robustft.schemas import AgentCall, Fate, InputError, Stage, Verdict
from robustft.store.reviews import run_review_summary

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id TEXT PRIMARY KEY, row INTEGER NOT NULL, source TEXT, stage TEXT NOT NULL,
    verdict TEXT, original TEXT, final TEXT, entropy REAL, entropy_source TEXT,
    fate TEXT, reason TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS samples_row ON samples(row);
CREATE INDEX IF NOT EXISTS samples_fate ON samples(fate);
CREATE INDEX IF NOT EXISTS samples_entropy ON samples(entropy);
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, sample_id TEXT NOT NULL, stage TEXT NOT NULL,
    role TEXT NOT NULL, prompt TEXT, prompt_hash TEXT, model TEXT, answer TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL, error TEXT,
    cached INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS calls_sample ON calls(sample_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


SORTS = {"row": "row", "entropy": "entropy", "fate": "fate", "id": "id",
         "confidence": "json_extract(data, '$.confidence')"}
PAGE_COLUMNS = ["id", "row", "fate", "verdict", "original", "final", "changed", "entropy",
                "confidence", "reason", "question"]
CELL = 160  # characters of a question in a table row; responses one more, for the page to clip
NOT_RELABELS = (Fate.CONFIRMED, Fate.UNSURE, Fate.UNSURE_DROPPED)  # flagged, kept as they were


def _where(filters: dict[str, str]) -> tuple[str, list[Any]]:
    """SQL of the table filters: fate (or 'relabeled'), changed, errors, q (id or question)."""
    clauses, args = [], []
    fate = filters.get("fate")
    if fate == "relabeled":
        clauses.append("fate IN (?, ?)")
        args += [Fate.RELABELED_KEPT, Fate.RELABELED_DROPPED]
    elif fate:
        clauses.append("COALESCE(fate, stage) = ?")
        args.append(fate)
    if filters.get("changed") in ("1", "true"):
        clauses.append("final IS NOT NULL AND final != original")
    if filters.get("errors") in ("1", "true"):
        clauses.append("fate = ?")
        args.append(Fate.ERROR)
    if q := filters.get("q"):
        clauses.append("(id LIKE ? OR json_extract(data, '$.sample.question') LIKE ?)")
        args += [f"%{q}%", f"%{q}%"]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class RunStore:
    """Synchronous SQLite store used from the event loop thread (writes are sub-millisecond)."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.dir / "run.sqlite")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._shards: dict[int, sqlite3.Connection] = {}

    @staticmethod
    def _existing(run_dir: str | Path) -> Path:
        path = Path(run_dir) / "run.sqlite"
        if not path.is_file():
            raise RunDirError(f"{run_dir}: not a run directory (no run.sqlite)")
        return path

    @classmethod
    def open_existing(cls, run_dir: str | Path) -> RunStore:
        cls._existing(run_dir)
        return cls(run_dir)

    @classmethod
    def reader(cls, run_dir: str | Path) -> RunStore:
        """A read-only store (no schema writes), usable from any thread that opens it."""
        path = cls._existing(run_dir)
        store = cls.__new__(cls)
        store.dir = Path(run_dir)
        store.db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True,
                                   check_same_thread=False)
        store._shards = {}
        return store

    def close(self) -> None:
        for db in self._shards.values():
            db.close()
        self.db.close()

    # ---- sharded runs: calls live in the shards -----------------------------------------
    def _block_rows(self) -> int | None:
        value = self.get_meta("block_rows")
        return int(value) if value else None

    def is_sharded(self) -> bool:
        """A run made with ``curate --ray`` (calls in ``shards/``)."""
        return self._block_rows() is not None

    def _shard(self, block: int) -> sqlite3.Connection | None:
        from robustft.store.shards import shard_dir

        if block not in self._shards:
            path = shard_dir(self.dir, block) / "run.sqlite"
            if not path.is_file():
                return None
            self._shards[block] = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True,
                                                  check_same_thread=False)
        return self._shards[block]

    def _call_dbs(self) -> list[sqlite3.Connection]:
        """Where the calls are: this store, or every shard of a sharded run."""
        rows = self._block_rows()
        if rows is None:
            return [self.db]
        n = self.db.execute("SELECT COALESCE(MAX(row), 0) FROM samples").fetchone()[0]
        dbs = [self._shard(b) for b in range((n - 1) // rows + 1 if n else 0)]
        return [d for d in dbs if d is not None]

    def merge_shards(self, blocks: int) -> None:
        """Copy every shard's sample records into this (catalog) store."""
        from robustft.store.shards import shard_dir

        for b in range(blocks):
            path = shard_dir(self.dir, b) / "run.sqlite"
            if not path.is_file():
                continue
            self.db.execute("ATTACH DATABASE ? AS shard", (str(path),))
            try:
                with self._writing():
                    self.db.execute("INSERT OR REPLACE INTO samples SELECT * FROM shard.samples")
            finally:
                self.db.execute("DETACH DATABASE shard")

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._writing():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        with self._writing():
            self.db.execute("DELETE FROM meta WHERE key=?", (key,))

    @contextmanager
    def _writing(self):
        """One transaction on run.sqlite, rolled back whole when it fails; a full disk
        raises :class:`DiskFull` naming the file."""
        with writes_to(self.dir / "run.sqlite"), self.db:
            yield

    def save(self, sid: str, row: int, source: str, stage: str, data: dict[str, Any],
             calls: list[AgentCall] = (), **cols: Any) -> None:
        """Upsert one sample's record and append its new calls, in one transaction."""
        fields = ["verdict", "original", "final", "entropy", "entropy_source", "fate", "reason"]
        values = [cols.get(f) for f in fields]
        with self._writing():
            self.db.execute(
                f"INSERT OR REPLACE INTO samples (id, row, source, stage, {', '.join(fields)}, "
                f"data) VALUES ({', '.join('?' * (len(fields) + 5))})",
                (sid, row, source, stage, *values, json.dumps(data, default=str)))
            insert_calls(self.db, sid, stage, calls)

    def save_probe(self, sid: str, probe: dict[str, Any], calls: list[AgentCall],
                   kind: str = "probe") -> None:
        """A sample's probe (RobustFT: its relabel with the label hidden) or decoy (CLEAR:
        other options scored as its response) result, ``kind``, beside its record, whose fate
        it does not change; the calls join its trace at stage ``kind``."""
        with self._writing():
            self.db.execute(f"UPDATE samples SET data=json_set(data, '$.{kind}', json(?)) "
                            "WHERE id=?", (json.dumps(probe, default=str), sid))
            insert_calls(self.db, sid, kind, calls)

    def probes(self, kind: str = "probe") -> list[dict[str, Any]]:
        """Every stored probe (or decoy) result (id, row, its fields), in input order."""
        return [{"id": sid, "row": row, **json.loads(p)} for sid, row, p in self.db.execute(
            f"SELECT id, row, json_extract(data, '$.{kind}') FROM samples "
            f"WHERE json_extract(data, '$.{kind}') IS NOT NULL ORDER BY row")]

    def save_input_errors(self, errors: Iterable[InputError]) -> None:
        """Rows that failed input validation: error rows with the reason, never processed."""
        for e in errors:
            self.save(e.id, e.row, e.source, Stage.INPUT_ERROR,
                      {"raw": e.raw, "errors": [e.reason]}, verdict=Verdict.ERROR,
                      fate=Fate.ERROR, reason=e.reason)

    def set_fates(self, fates: list[tuple[str, str, str, str | None]]) -> None:
        """Bulk (id, fate, reason, final label) update after selection."""
        with self._writing():
            self.db.executemany("UPDATE samples SET fate=?, reason=?, final=? WHERE id=?",
                                [(f, r, lab, sid) for sid, f, r, lab in fates])

    def reopen_errors(self, first_stage: str, first_keys: tuple[str, ...]) -> int:
        """Make error rows from endpoint failures pending again (``--retry-errors``): a
        failure in ``first_stage`` reruns the sample whole; a later failure reruns from the
        end of the first stage, keeping ``first_keys`` of its data. Input-validation errors
        stay as they are. Returns how many rows were reopened."""
        n = 0
        with self._writing():
            for sid, stage in self.db.execute(
                    "SELECT id, stage FROM samples WHERE fate=? AND stage != ?",
                    (Fate.ERROR, Stage.INPUT_ERROR)).fetchall():
                if stage == first_stage:
                    self.db.execute("DELETE FROM samples WHERE id=?", (sid,))
                else:
                    data = {k: v for k, v in self.data(sid).items()
                            if k in ("sample", *first_keys)}
                    self.db.execute("UPDATE samples SET stage=?, fate=NULL, reason=NULL, "
                                    "final=NULL, entropy=NULL, entropy_source=NULL, data=? "
                                    "WHERE id=?", (first_stage, json.dumps(data), sid))
                n += 1
        return n

    def stages(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT id, stage FROM samples"))

    def sample_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def verdicts(self, *wanted: str) -> list[tuple[str, str, str]]:
        """(id, verdict, stage) of the samples whose checker verdict is one of ``wanted``, in
        input order (reads the columns only, no record JSON)."""
        marks = ",".join("?" * len(wanted))
        return self.db.execute(f"SELECT id, verdict, stage FROM samples "
                               f"WHERE verdict IN ({marks}) ORDER BY row", wanted).fetchall()

    def call_answers(self, stage: str, roles: tuple[str, ...]) -> dict[str, list[str | None]]:
        """Sample id -> the parsed answers of its calls of ``roles`` at ``stage``."""
        out: dict[str, list[str | None]] = {}
        marks = ",".join("?" * len(roles))
        for sid, answer in self.db.execute(f"SELECT sample_id, answer FROM calls WHERE stage=? "
                                           f"AND role IN ({marks})", (stage, *roles)):
            out.setdefault(sid, []).append(answer)
        return out

    def records(self, stage: str | None = None) -> Iterator[dict[str, Any]]:
        """Sample records in input order (optionally only one stage), data JSON decoded."""
        q = "SELECT id, row, stage, fate, reason, final, data FROM samples"
        args: tuple = ()
        if stage:
            q, args = q + " WHERE stage=?", (stage,)
        for sid, row, st, fate, reason, final, data in self.db.execute(q + " ORDER BY row", args):
            yield {"id": sid, "row": row, "stage": st, "fate": fate, "reason": reason,
                   "final": final, **json.loads(data)}

    def data(self, sid: str) -> dict[str, Any]:
        """The stored state of one sample (its data JSON)."""
        return json.loads(self.db.execute("SELECT data FROM samples WHERE id=?",
                                          (sid,)).fetchone()[0])

    def record(self, sid: str) -> dict[str, Any] | None:
        """One sample's record, as :meth:`records` gives it (None: no such sample)."""
        row = self.db.execute("SELECT id, row, stage, fate, reason, final, data FROM samples "
                              "WHERE id=?", (sid,)).fetchone()
        if row is None:
            return None
        keys = ["id", "row", "stage", "fate", "reason", "final"]
        return {**dict(zip(keys, row[:-1], strict=True)), **json.loads(row[-1])}

    def calls(self, sid: str) -> list[tuple[str, AgentCall]]:
        db = self.db
        if (rows := self._block_rows()) is not None:
            row = self.db.execute("SELECT row FROM samples WHERE id=?", (sid,)).fetchone()
            db = self._shard((row[0] - 1) // rows) if row else None
            if db is None:
                return []
        return [(stage, AgentCall.model_validate_json(d)) for stage, d in db.execute(
            "SELECT stage, data FROM calls WHERE sample_id=? ORDER BY seq", (sid,))]

    def all_calls(self) -> Iterator[AgentCall]:
        """Every call of the run, in the order they were saved (shard by shard)."""
        for db in self._call_dbs():
            for (d,) in db.execute("SELECT data FROM calls ORDER BY seq"):
                yield AgentCall.model_validate_json(d)

    # ---- what the viewer reads: paginated in SQL over indexed columns -------------------
    def entropies(self) -> list[float]:
        """Entropies of the relabels (a confirmed or unsure sample is not one)."""
        marks = ",".join("?" * len(NOT_RELABELS))
        return [e for (e,) in self.db.execute(
            f"SELECT entropy FROM samples WHERE entropy IS NOT NULL "
            f"AND COALESCE(fate, '') NOT IN ({marks})", [str(f) for f in NOT_RELABELS])]

    def confidences(self) -> list[float]:
        return [c for (c,) in self.db.execute(
            "SELECT json_extract(data, '$.confidence') FROM samples "
            "WHERE json_extract(data, '$.confidence') IS NOT NULL")]

    def page(self, filters: dict[str, str], sort: str, descending: bool, offset: int,
             size: int) -> tuple[int, list[dict[str, Any]]]:
        """(matching count, one page of table rows with :data:`PAGE_COLUMNS`)."""
        where, args = _where(filters)
        total = self.db.execute(f"SELECT COUNT(*) FROM samples{where}", args).fetchone()[0]
        nulls = f"{SORTS[sort]} IS NULL, " if sort in ("entropy", "confidence") else ""
        rows = self.db.execute(
            f"SELECT id, row, COALESCE(fate, stage), verdict, substr(original, 1, {CELL + 1}), "
            f"substr(final, 1, {CELL + 1}), final IS NOT NULL AND final != original, entropy, "
            f"json_extract(data, '$.confidence'), reason, "
            f"substr(json_extract(data, '$.sample.question'), 1, {CELL}) FROM samples{where} "
            f"ORDER BY {nulls}{SORTS[sort]} {'DESC' if descending else 'ASC'}, row "
            f"LIMIT ? OFFSET ?", [*args, size, offset]).fetchall()
        return total, [dict(zip(PAGE_COLUMNS, r, strict=True)) for r in rows]

    def changed_ids(self, limit: int) -> list[str]:
        """Samples whose final label differs from the given one, in input order."""
        return [i for (i,) in self.db.execute(
            "SELECT id FROM samples WHERE final IS NOT NULL AND final != original ORDER BY row "
            "LIMIT ?", (limit,))]

    def ids_with_fate(self, fates: Iterable[str], limit: int) -> list[str]:
        """Samples whose fate is one of ``fates``, in input order."""
        fates = [str(f) for f in fates]
        return [i for (i,) in self.db.execute(
            f"SELECT id FROM samples WHERE fate IN ({','.join('?' * len(fates))}) ORDER BY row "
            "LIMIT ?", (*fates, limit))]

    def totals(self) -> dict[str, Any]:
        fates = dict(self.db.execute(  # the fates (and unfinished stages) that occur
            "SELECT COALESCE(fate, stage), COUNT(*) FROM samples GROUP BY 1"))
        calls = pt = ct = errs = cached = 0
        by_role: dict[str, dict[str, int]] = {}
        by_role_model: dict[tuple[str, str | None], list[int]] = {}
        for db in self._call_dbs():
            n, p, c, e, h = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), "
                "COALESCE(SUM(completion_tokens),0), COUNT(error), COALESCE(SUM(cached),0) "
                "FROM calls").fetchone()
            calls, pt, ct, errs, cached = calls + n, pt + p, ct + c, errs + e, cached + h
            for r, m, n, p, c, u, j in db.execute(
                    "SELECT role, model, COUNT(*), COALESCE(SUM(prompt_tokens),0), "
                    "COALESCE(SUM(completion_tokens),0), COALESCE(SUM(json_extract(data, "
                    "'$.parse_status') IN ('unparsed', 'truncated')),0), "
                    "COALESCE(SUM(json_extract(data, '$.structured')),0) "
                    "FROM calls GROUP BY role, model"):
                v = by_role.setdefault(r, {"calls": 0, "prompt_tokens": 0,
                                           "completion_tokens": 0, "unparsed": 0,
                                           "structured": 0})
                for k, x in zip(v, (n, p, c, u, j), strict=True):
                    v[k] += x
                tokens = by_role_model.setdefault((r, m), [0, 0])
                tokens[0] += p
                tokens[1] += c
        by_role = dict(sorted(by_role.items()))
        changed = self.db.execute(
            "SELECT COUNT(*) FROM samples WHERE fate=? AND final != original",
            (Fate.RELABELED_KEPT,)).fetchone()[0]
        out = {"fates": fates, "samples": sum(fates.values()), "calls": calls,
               "failed_calls": errs, "cached_calls": cached, "prompt_tokens": pt,
               "completion_tokens": ct, "labels_changed": changed, "by_role": by_role}
        internal = self.db.execute(  # rows a bug failed (graph/stages.py: "internal: ...")
            "SELECT COUNT(*) FROM samples WHERE fate='error' AND reason LIKE '%internal: %'"
        ).fetchone()[0]
        if internal:
            out["internal_errors"] = internal
        if (precision := self.get_meta("precision")) is not None:
            out["precision"] = json.loads(precision)
        if (canaries := self.get_meta("canaries")) is not None:  # planted errors' report
            out["canaries"] = json.loads(canaries)
        if (reviews := run_review_summary(self.dir, self.db)) is not None:
            out["reviews"] = reviews
        prices = self._prices()
        if prices:  # every call in the traces: a cached one stands for the one paid first
            out["cost"] = cost_by_role(
                [(r, m, p, c) for (r, m), (p, c) in by_role_model.items()], prices)
        return out

    def _prices(self) -> dict[str, tuple[float, float]]:
        """The prices of the run's config snapshot (none without one)."""
        path = self.dir / "config.yaml"
        return prices_of(load_config(path)) if path.is_file() else {}


def insert_calls(db: sqlite3.Connection, sample_id: str, stage: str,
                 calls: Iterable[AgentCall]) -> None:
    """Append ``calls`` of one sample (or canary) at ``stage`` to the ``calls`` table (inside
    the caller's transaction)."""
    db.executemany(
        "INSERT INTO calls (sample_id, stage, role, prompt, prompt_hash, model, answer, "
        "prompt_tokens, completion_tokens, latency_s, error, cached, data) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [(sample_id, stage, c.role, c.prompt, c.prompt_hash, c.model, c.answer,
          c.prompt_tokens, c.completion_tokens, c.latency_s, c.error, int(c.cached),
          c.model_dump_json()) for c in calls])
