"""People's reviews of the agents' decisions: ``RUN/reviews.sqlite``, beside the traces.

A review records what a person decided for one sample (accept the agents' decision, restore
the original response, drop the sample, or an edited response), with an optional note, the
reviewer's name and time, and the agents' decision it was made against (fate and final
response). ``curate`` never writes this file, so reruns keep every review; when a rerun changes
the agents' decision for a reviewed sample, the review is *stale*: shown and counted, never
applied (:func:`effective`). Each save bumps the sample's version: a save made against an older
version is a conflict (two reviewers on one sample), not a lost update. Every save is also
appended to ``review_log``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robustft.errors import UsageError
from robustft.schemas import REVIEW_ACTIONS as ACTIONS
from robustft.schemas import Fate, Uncertainty

SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    sample_id TEXT PRIMARY KEY, action TEXT NOT NULL, response TEXT, note TEXT,
    reviewer TEXT, at REAL NOT NULL, agent_fate TEXT, agent_final TEXT,
    version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS review_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, sample_id TEXT NOT NULL, action TEXT NOT NULL,
    response TEXT, note TEXT, reviewer TEXT, at REAL NOT NULL, agent_fate TEXT,
    agent_final TEXT, version INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Review:
    sample_id: str
    action: str  # accept | restore | drop | edit
    response: str | None  # the final response it sets (edit, restore); None for accept/drop
    note: str | None
    reviewer: str | None
    at: float
    agent_fate: str | None  # the agents' decision it was made against
    agent_final: str | None
    version: int

    def stale(self, fate: str | None, final: str | None) -> bool:
        """The agents' decision changed since this review (a rerun decided otherwise)."""
        return (fate, final) != (self.agent_fate, self.agent_final)

    def as_dict(self, fate: str | None, final: str | None) -> dict[str, Any]:
        """The review with whether it is stale against the agents' ``fate`` and ``final``."""
        return {**asdict(self), "stale": self.stale(fate, final)}


class ReviewConflict(Exception):
    """Someone saved a review of this sample since the version the saver had seen."""

    def __init__(self, current: Review):
        super().__init__(f"{current.reviewer or 'someone'} reviewed this sample first "
                         f"({current.action}, version {current.version})")
        self.current = current


def connect_people(run_dir: str | Path, schema: str) -> tuple[Path, sqlite3.Connection]:
    """The run's people's file, ``reviews.sqlite`` (WAL, autocommit, one connection the
    viewer's threads share), with ``schema`` created."""
    path = Path(run_dir) / "reviews.sqlite"
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(schema)
    return path, db


class ReviewStore:
    def __init__(self, run_dir: str | Path):
        self.path, self.db = connect_people(run_dir, SCHEMA)
        self._lock = threading.RLock()  # one connection, shared by the viewer's threads

    @staticmethod
    def exists(run_dir: str | Path) -> bool:
        return (Path(run_dir) / "reviews.sqlite").is_file()

    def get(self, sid: str) -> Review | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM reviews WHERE sample_id=?", (sid,)).fetchone()
        return Review(*row) if row else None

    def all(self) -> dict[str, Review]:
        with self._lock:
            return {r[0]: Review(*r) for r in self.db.execute("SELECT * FROM reviews")}

    def reviewed_ids(self) -> set[str]:
        with self._lock:
            return {i for (i,) in self.db.execute("SELECT sample_id FROM reviews")}

    def count(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]

    def save(self, sid: str, action: str, response: str | None, note: str | None,
             reviewer: str | None, agent_fate: str | None, agent_final: str | None,
             base_version: int) -> Review:
        """Store a review made against ``base_version`` (0: the sample had none); raises
        :class:`ReviewConflict` when the sample's review is no longer at that version."""
        if action not in ACTIONS:
            raise UsageError(f"action must be one of {ACTIONS}")
        if action == "edit" and not (response or "").strip():
            raise UsageError("an edit needs the new response")
        with self._lock:
            return self._save(sid, action, response, note, reviewer, agent_fate,
                              agent_final, base_version)

    def _save(self, sid: str, action: str, response: str | None, note: str | None,
              reviewer: str | None, agent_fate: str | None, agent_final: str | None,
              base_version: int) -> Review:
        self.db.execute("BEGIN IMMEDIATE")  # check and write under one lock (processes too)
        try:
            current = self.get(sid)
            if (current.version if current else 0) != base_version:
                raise ReviewConflict(current)
            review = Review(sid, action, response, note or None, reviewer, time.time(),
                            agent_fate, agent_final, base_version + 1)
            values = tuple(asdict(review).values())
            self.db.execute("INSERT OR REPLACE INTO reviews VALUES (?,?,?,?,?,?,?,?,?)", values)
            self.db.execute("INSERT INTO review_log (sample_id, action, response, note, "
                            "reviewer, at, agent_fate, agent_final, version) "
                            "VALUES (?,?,?,?,?,?,?,?,?)", values)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return review

    def close(self) -> None:
        self.db.close()


def effective(fate: str | None, final: str | None, original: str | None,
              review: Review | None, kept_fates: tuple[str, ...]) -> tuple[bool, str | None]:
    """(kept, final response) of a sample once its review applies; a stale or absent review
    leaves the agents' decision. ``accept`` keeps the agents' decision (an unsure-dropped
    sample stays out, a confirmed or unsure one stays in as it was); ``restore`` keeps the
    original response whatever the fate; ``drop`` leaves the sample out; ``edit`` keeps the
    person's response."""
    agents = (fate in kept_fates and final is not None, final)
    if review is None or review.stale(fate, final) or review.action == "accept":
        return agents
    if review.action == "drop":
        return False, final
    if review.action == "restore":
        return original is not None, original
    return True, review.response  # edit


# what people review: every sample the agents flagged (changed, confirmed, unsure, dropped)
# or failed on; the unsure ones first (the judges could not tell: a person must)
UNSURE_FATES = (Fate.UNSURE, Fate.UNSURE_DROPPED)
QUEUE_FATES = (*UNSURE_FATES, Fate.CONFIRMED, Fate.RELABELED_KEPT, Fate.RELABELED_DROPPED,
               Fate.ERROR)


def queue_ids(samples: sqlite3.Connection, filters: dict[str, str], order: Uncertainty
              ) -> list[str]:
    """The review queue under ``filters`` (fate, q: id or question): unsure samples first,
    then the rest; within each, most uncertain first by the method's ``order`` (highest
    entropy for RobustFT, lowest confidence for CLEAR), then input order."""
    fate = filters.get("fate")
    fates = (fate,) if fate in QUEUE_FATES else QUEUE_FATES
    where, args = f"fate IN ({','.join('?' * len(fates))})", [str(f) for f in fates]
    if q := filters.get("q"):
        where += " AND (id LIKE ? OR json_extract(data, '$.sample.question') LIKE ?)"
        args += [f"%{q}%", f"%{q}%"]
    columns = {c[1] for c in samples.execute("PRAGMA table_info(samples)")}
    key = order.field if order.field in columns else f"json_extract(data, '$.{order.field}')"
    unsure = f"fate NOT IN ({','.join(repr(str(f)) for f in UNSURE_FATES)})"
    by = f"{unsure}, {key} IS NULL, {key} {'DESC' if order.unsure == 'high' else 'ASC'}, row"
    return [i for (i,) in samples.execute(f"SELECT id FROM samples WHERE {where} "
                                          f"ORDER BY {by}", args)]


def run_review_summary(run_dir: Path, samples: sqlite3.Connection) -> dict[str, Any] | None:
    """Agreement statistics of a run's reviews (None: nobody reviewed anything yet)."""
    if not ReviewStore.exists(run_dir):
        return None
    reviews = ReviewStore(run_dir)
    try:
        return review_summary(samples, reviews) if reviews.count() else None
    finally:
        reviews.close()


def review_summary(samples: sqlite3.Connection, reviews: ReviewStore) -> dict[str, Any]:
    """Agreement statistics of a run's reviews against its samples table (``samples``: the
    run store's connection)."""
    from robustft.methods.review_stats import review_stats

    all_reviews = reviews.all()
    queue = samples.execute(f"SELECT COUNT(*) FROM samples WHERE fate IN "
                            f"({','.join('?' * len(QUEUE_FATES))})", [str(f) for f in QUEUE_FATES]
                            ).fetchone()[0]
    rows = []
    ids = list(all_reviews)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for sid, fate, final, entropy, conf in samples.execute(
                "SELECT id, fate, final, entropy, json_extract(data, '$.confidence') FROM "
                f"samples WHERE id IN ({','.join('?' * len(chunk))})", chunk):
            r = all_reviews[sid]
            unc = entropy if entropy is not None else (1 - conf if conf is not None else None)
            rows.append((fate, unc, r.action, r.stale(fate, final)))
    return review_stats(rows, queue)
