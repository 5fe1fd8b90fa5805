"""Per-request cache: a completed LLM call is never paid for twice.

SQLite, in the run directory by default (``cache.sqlite``) or shared across runs with
``--cache PATH``. The key is a hash of everything that determines a reply: endpoint model,
rendered messages, sampling parameters and, for sampled calls, the sample index. Editing one
prompt changes only the keys of the calls that prompt renders. Only successful replies are
stored; each is committed at once, so a killed run keeps every call it completed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from robustft.errors import writes_to
from robustft.schemas import Completion


def request_key(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """Stable hash of a request: model + messages + sampling parameters (incl. sample index)."""
    blob = json.dumps({"model": model, "messages": messages, "params": params},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class RequestCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, "
                        "model TEXT, completion TEXT NOT NULL, created REAL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, "
                        "vector BLOB NOT NULL)")
        self.db.commit()
        self.hits = 0

    def get(self, key: str) -> Completion | None:
        row = self.db.execute("SELECT completion FROM completions WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        self.hits += 1
        return Completion.model_validate_json(row[0])

    def put(self, key: str, completion: Completion) -> None:
        with writes_to(self.path), self.db:
            self.db.execute("INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?)",
                            (key, completion.model, completion.model_dump_json(), time.time()))

    def get_vectors(self, keys: list[str]) -> dict[str, list[float]]:
        """Cached embedding vectors (float32) of those ``keys`` that have one."""
        out = {}
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            rows = self.db.execute(f"SELECT key, vector FROM embeddings WHERE key IN "
                                   f"({','.join('?' * len(part))})", part).fetchall()
            out.update({k: np.frombuffer(v, dtype=np.float32).tolist() for k, v in rows})
        self.hits += len(out)
        return out

    def put_vectors(self, vectors: dict[str, list[float]]) -> None:
        with writes_to(self.path), self.db:
            self.db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?)",
                                [(k, np.asarray(v, dtype=np.float32).tobytes())
                                 for k, v in vectors.items()])

    def close(self) -> None:
        self.db.close()
