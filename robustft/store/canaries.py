"""Planted errors (canaries) in the run directory: their own table in ``run.sqlite``, apart
from the samples, so that no output, fate count or review queue ever sees one. Their calls
join the ``calls`` table at stage ``canary`` (under the canary's id): they are part of what a
run spends. Also the per-stage call totals a pilot projects from."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from robustft.schemas import AgentCall
from robustft.store.runstore import RunStore, insert_calls

SCHEMA = """
CREATE TABLE IF NOT EXISTS canaries (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, kind TEXT NOT NULL, stage TEXT NOT NULL,
    data TEXT NOT NULL);
"""
STAGE = "canary"  # the calls' stage


class CanaryStore:
    """The canaries of one run store (same connection, same transactions)."""

    def __init__(self, store: RunStore):
        self.db: sqlite3.Connection = store.db
        self.db.executescript(SCHEMA)

    def save(self, cid: str, source: str, kind: str, stage: str, data: dict[str, Any],
             calls: list[AgentCall] = ()) -> None:
        """Upsert one canary and append its new calls, in one transaction."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO canaries VALUES (?, ?, ?, ?, ?)",
                            (cid, source, kind, stage, json.dumps(data, default=str)))
            insert_calls(self.db, cid, STAGE, calls)

    def all(self) -> dict[str, dict[str, Any]]:
        """id -> {id, source, kind, stage, and its data}."""
        return {cid: {"id": cid, "source": src, "kind": kind, "stage": stage,
                      **json.loads(data)}
                for cid, src, kind, stage, data in self.db.execute(
                    "SELECT id, source, kind, stage, data FROM canaries ORDER BY rowid")}


def calls_by_stage(store: RunStore) -> list[tuple[str, str, str | None, int, int, int]]:
    """(stage, role, model, calls, prompt tokens, completion tokens) of every call stored in
    this (single-process) run."""
    return store.db.execute(
        "SELECT stage, role, model, COUNT(*), COALESCE(SUM(prompt_tokens), 0), "
        "COALESCE(SUM(completion_tokens), 0) FROM calls GROUP BY stage, role, model").fetchall()
