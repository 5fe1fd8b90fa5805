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
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .schemas import AgentCall

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


class RunStore:
    """Synchronous SQLite store used from the event loop thread (writes are sub-millisecond)."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.dir / "run.sqlite")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    @staticmethod
    def _existing(run_dir: str | Path) -> Path:
        path = Path(run_dir) / "run.sqlite"
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir}: not a run directory (no run.sqlite)")
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
        return store

    def close(self) -> None:
        self.db.close()

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        self.db.commit()

    def save(self, sid: str, row: int, source: str, stage: str, data: dict[str, Any],
             calls: list[AgentCall] = (), **cols: Any) -> None:
        """Upsert one sample's record and append its new calls, in one transaction."""
        fields = ["verdict", "original", "final", "entropy", "entropy_source", "fate", "reason"]
        values = [cols.get(f) for f in fields]
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO samples (id, row, source, stage, {', '.join(fields)}, "
                f"data) VALUES ({', '.join('?' * (len(fields) + 5))})",
                (sid, row, source, stage, *values, json.dumps(data, default=str)))
            self.db.executemany(
                "INSERT INTO calls (sample_id, stage, role, prompt, prompt_hash, model, answer, "
                "prompt_tokens, completion_tokens, latency_s, error, cached, data) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(sid, stage, c.role, c.prompt, c.prompt_hash, c.model, c.answer,
                  c.prompt_tokens, c.completion_tokens, c.latency_s, c.error, int(c.cached),
                  c.model_dump_json()) for c in calls])

    def set_fates(self, fates: list[tuple[str, str, str, str | None]]) -> None:
        """Bulk (id, fate, reason, final label) update after selection."""
        with self.db:
            self.db.executemany("UPDATE samples SET fate=?, reason=?, final=? WHERE id=?",
                                [(f, r, lab, sid) for sid, f, r, lab in fates])

    def stages(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT id, stage FROM samples"))

    def records(self, stage: str | None = None) -> Iterator[dict[str, Any]]:
        """Sample records in input order (optionally only one stage), data JSON decoded."""
        q = "SELECT id, row, stage, fate, reason, final, data FROM samples"
        args: tuple = ()
        if stage:
            q, args = q + " WHERE stage=?", (stage,)
        for sid, row, st, fate, reason, final, data in self.db.execute(q + " ORDER BY row", args):
            yield {"id": sid, "row": row, "stage": st, "fate": fate, "reason": reason,
                   "final": final, **json.loads(data)}

    def record(self, sid: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT id, row, stage, verdict, fate, reason, final, entropy, entropy_source, data "
            "FROM samples WHERE id=?", (sid,)).fetchone()
        if row is None:
            return None
        keys = ["id", "row", "stage", "verdict", "fate", "reason", "final", "entropy",
                "entropy_source"]
        return {**json.loads(row[-1]), **dict(zip(keys, row[:-1], strict=True))}

    def calls(self, sid: str) -> list[tuple[str, AgentCall]]:
        return [(stage, AgentCall.model_validate_json(d)) for stage, d in self.db.execute(
            "SELECT stage, data FROM calls WHERE sample_id=? ORDER BY seq", (sid,))]

    def totals(self) -> dict[str, Any]:
        fates = dict(self.db.execute(
            "SELECT COALESCE(fate, stage), COUNT(*) FROM samples GROUP BY 1"))
        calls, pt, ct, errs, cached = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0),"
            " COUNT(error), COALESCE(SUM(cached),0) FROM calls").fetchone()
        by_role = {r: {"calls": n, "prompt_tokens": p, "completion_tokens": c}
                   for r, n, p, c in self.db.execute(
                       "SELECT role, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) "
                       "FROM calls GROUP BY role ORDER BY role")}
        changed = self.db.execute(
            "SELECT COUNT(*) FROM samples WHERE fate='relabeled-kept' AND final != original"
        ).fetchone()[0]
        return {"fates": fates, "samples": sum(fates.values()), "calls": calls,
                "failed_calls": errs, "cached_calls": cached, "prompt_tokens": pt,
                "completion_tokens": ct,
                "labels_changed": changed, "by_role": by_role}
