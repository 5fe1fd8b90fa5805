"""The blind audit sample and people's verdicts on it, in ``RUN/reviews.sqlite`` (the people's
file, beside the reviews; ``curate`` never writes it).

``audit_sample`` holds the drawn rows in the order they are shown (``position``), the stratum
each was drawn from (flagged or not, at draw time), the blind verdict on the *original*
response (right, wrong or unsure; who, when) and, for a kept row the agents changed, the
verdict on the final response (with the response judged, so that a rerun that changes it
makes that answer stale). A blind verdict is final: once it is saved the agents' story has
been shown, so it cannot be changed afterwards. ``audit_meta`` keeps the draw's seed and
sizes; ``audit_log`` every verdict saved. A verdict here never changes an output (reviews do).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robustft.store.reviews import connect_people

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_sample (
    sample_id TEXT PRIMARY KEY, position INTEGER NOT NULL UNIQUE, stratum TEXT NOT NULL,
    drawn_at REAL NOT NULL, verdict TEXT, reviewer TEXT, at REAL, final_verdict TEXT,
    final_reviewer TEXT, final_at REAL, judged_final TEXT);
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, sample_id TEXT NOT NULL, question TEXT NOT NULL,
    verdict TEXT NOT NULL, judged TEXT, reviewer TEXT, at REAL NOT NULL);
"""
VERDICTS = ("right", "wrong", "unsure")
STRATA = ("flagged", "unflagged")


@dataclass(frozen=True)
class AuditEntry:
    sample_id: str
    position: int
    stratum: str  # flagged | unflagged, when drawn
    drawn_at: float
    verdict: str | None = None  # the blind verdict on the original response
    reviewer: str | None = None
    at: float | None = None
    final_verdict: str | None = None  # on the agents' final response (kept, changed rows)
    final_reviewer: str | None = None
    final_at: float | None = None
    judged_final: str | None = None  # the final response that verdict was given on

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AuditConflict(Exception):
    """The verdict was given already (by this reviewer in another tab, or someone else)."""


class AuditStore:
    def __init__(self, run_dir: str | Path):
        self.path, self.db = connect_people(run_dir, SCHEMA)
        self._lock = threading.RLock()  # one connection, shared by the viewer's threads

    @classmethod
    def existing(cls, run_dir: str | Path) -> AuditStore | None:
        """The store when the run's people's file holds an audit sample (None: nothing to
        read; nothing is created or written)."""
        path = Path(run_dir) / "reviews.sqlite"
        if not path.is_file():
            return None
        db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE name='audit_sample'"
                               ).fetchone()
        finally:
            db.close()
        return cls(run_dir) if found else None

    def entries(self) -> list[AuditEntry]:
        with self._lock:
            return [AuditEntry(*r) for r in self.db.execute(
                "SELECT * FROM audit_sample ORDER BY position")]

    def get(self, sid: str) -> AuditEntry | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM audit_sample WHERE sample_id=?",
                                  (sid,)).fetchone()
        return AuditEntry(*row) if row else None

    def meta(self) -> dict[str, Any]:
        with self._lock:
            return {k: json.loads(v) for k, v in self.db.execute("SELECT * FROM audit_meta")}

    def add(self, rows: list[tuple[str, str]], meta: dict[str, Any]) -> None:
        """Append drawn (sample id, stratum) rows after the existing ones (a row drawn
        already is not added twice), and the draw's ``meta``, in one transaction."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                at = self.db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM "
                                     "audit_sample").fetchone()[0]
                now = time.time()
                for sid, stratum in rows:  # a row another process drew meanwhile: once
                    at += self.db.execute(
                        "INSERT OR IGNORE INTO audit_sample (sample_id, position, stratum, "
                        "drawn_at) VALUES (?,?,?,?)", (sid, at, stratum, now)).rowcount
                self.db.executemany("INSERT OR REPLACE INTO audit_meta VALUES (?,?)",
                                    [(k, json.dumps(v)) for k, v in meta.items()])
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def clear(self) -> None:
        """Forget a draw nobody has judged yet (refused once a verdict exists)."""
        with self._lock:
            if self.db.execute("SELECT COUNT(*) FROM audit_sample WHERE verdict IS NOT NULL"
                               ).fetchone()[0]:
                raise AuditConflict("the audit sample has verdicts: it is kept")
            self.db.execute("DELETE FROM audit_sample")

    def save_verdict(self, sid: str, verdict: str, reviewer: str | None) -> AuditEntry:
        """The blind verdict on a drawn row's original response; raises
        :class:`AuditConflict` when it has one already (a blind verdict is final)."""
        return self._save(sid, verdict, reviewer, "original", None)

    def save_final(self, sid: str, verdict: str, reviewer: str | None,
                   final: str) -> AuditEntry:
        """The verdict on the agents' ``final`` response of a blindly judged row; raises
        :class:`AuditConflict` when that final response has one already."""
        return self._save(sid, verdict, reviewer, "final", final)

    def _save(self, sid: str, verdict: str, reviewer: str | None, question: str,
              final: str | None) -> AuditEntry:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}")
        now = time.time()
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")  # check and write under one lock (processes too)
            try:
                e = self.get(sid)
                if e is None:
                    raise ValueError(f"{sid!r} is not in the audit sample")
                if question == "original":
                    if e.verdict is not None:
                        raise AuditConflict(f"{e.reviewer or 'someone'} judged it already "
                                            f"({e.verdict}); a blind verdict is final")
                    self.db.execute("UPDATE audit_sample SET verdict=?, reviewer=?, at=? "
                                    "WHERE sample_id=?", (verdict, reviewer, now, sid))
                else:
                    if e.verdict is None:
                        raise ValueError("judge the original response first (blind)")
                    if e.final_verdict is not None and e.judged_final == final:
                        raise AuditConflict(f"{e.final_reviewer or 'someone'} judged the final "
                                            f"response already ({e.final_verdict})")
                    self.db.execute("UPDATE audit_sample SET final_verdict=?, final_reviewer=?,"
                                    " final_at=?, judged_final=? WHERE sample_id=?",
                                    (verdict, reviewer, now, final, sid))
                self.db.execute("INSERT INTO audit_log (sample_id, question, verdict, judged, "
                                "reviewer, at) VALUES (?,?,?,?,?,?)",
                                (sid, question, verdict, final, reviewer, now))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return self.get(sid)  # type: ignore[return-value]

    def close(self) -> None:
        self.db.close()
