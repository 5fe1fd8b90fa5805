"""Shared fixtures: the scripted server, ARC data from ../shared (skipped when absent)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from eval.scripted_server import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent
ARC = ROOT.parent / "shared" / "data" / "robustft-arc"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def arc_dir() -> Path:
    if not (ARC / "labeled.csv").is_file():
        pytest.skip(f"shared ARC data absent ({ARC})")
    return ARC


def read_csv(path: Path, limit: int | None = None) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return rows[:limit] if limit else rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def serve():
    """Start scripted servers; all are shut down at teardown."""
    started: list[ScriptedServer] = []

    def start(script, **kw) -> ScriptedServer:
        s = ScriptedServer(script, **kw).__enter__()
        started.append(s)
        return s

    yield start
    for s in started:
        s.__exit__(None, None, None)
