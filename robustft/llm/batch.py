"""Batch mode (``curate --batch``): chat requests go out through OpenAI's Batch API
(``/files`` + ``/batches``) instead of one HTTP call each.

The graphs run as in online mode; a request that misses the cache waits in a
:class:`BatchQueue` instead of being sent. Once no new request has arrived for ``SETTLE_S``
(every sample in flight is waiting on one), the waiting requests go out as one batch per
endpoint (split at ``MAX_REQUESTS``), written as JSONL under ``RUN/batches/``, uploaded and
polled with backoff. Each reply then answers its request exactly as an online reply would and
goes into the per-request cache, so traces, resume and reruns behave as in online mode; the
samples move on and their next requests form the next round's batch.

Offline (``curate --batch-files``, for ``vllm run-batch`` or any runner of OpenAI batch
files): each round's batch is only written, as ``RUN/batches/NAME.jsonl``; the run stops
resumably (exit 4) saying which command to run, and the rerun reads ``NAME.output.jsonl``.

The :class:`BatchLedger` (``RUN/batches.sqlite``) records which request (``custom_id``: its
cache key) went out in which batch, committed once the batch exists: after ``kill -9``
during polling, the rerun asks for the same requests, finds them in the ledger and polls the
same batches — nothing is submitted twice. A request the batch did not answer (expired,
failed, cancelled, an error reply) is answered ``None``: the client then calls online.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from robustft.llm.budget import BudgetExceeded
from robustft.llm.http import HTTPEndpoint, describe

log = logging.getLogger("robustft")

SETTLE_S = 0.5  # no new request for this long: the waiting ones form a batch
MAX_REQUESTS = 50_000  # requests per batch file (OpenAI's limit)
FINAL = {"completed", "failed", "expired", "cancelled"}
MAX_POLL_ERRORS = 10  # consecutive failed polls before the batch's requests go online

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, input_file TEXT NOT NULL,
    requests INTEGER NOT NULL, created REAL NOT NULL, status TEXT);
CREATE TABLE IF NOT EXISTS requests (
    custom_id TEXT NOT NULL, batch_id TEXT NOT NULL, PRIMARY KEY (custom_id, batch_id));
"""


class BatchFilesPending(BudgetExceeded):
    """Offline batches: their input files are written, their outputs are not there yet; the
    run stops resumably."""

    advice = "once the batch outputs are written, rerun the same command to continue"


class BatchLedger:
    """Which request went out in which batch, per run directory."""

    def __init__(self, path: str | Path):
        self.db = sqlite3.connect(path)
        self.db.executescript(SCHEMA)

    def record(self, batch_id: str, endpoint: str, input_file: str, keys: list[str]) -> None:
        with self.db:
            self.db.execute("INSERT INTO batches VALUES (?,?,?,?,?,NULL)",
                            (batch_id, endpoint, input_file, len(keys), time.time()))
            self.db.executemany("INSERT OR IGNORE INTO requests VALUES (?,?)",
                                [(k, batch_id) for k in keys])

    def submitted(self, endpoint: str, keys: list[str]) -> dict[str, str]:
        """key → the latest batch of ``endpoint`` it went out in (keys never sent: absent)."""
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            out.update(self.db.execute(
                "SELECT r.custom_id, r.batch_id FROM requests r JOIN batches b ON "
                "b.id = r.batch_id WHERE b.endpoint = ? AND r.custom_id IN "
                f"({','.join('?' * len(chunk))}) ORDER BY b.created", (endpoint, *chunk)))
        return out

    def set_status(self, batch_id: str, status: str) -> None:
        with self.db:
            self.db.execute("UPDATE batches SET status=? WHERE id=?", (status, batch_id))

    def close(self) -> None:
        self.db.close()


@dataclass
class _Waiting:
    key: str
    body: dict
    future: asyncio.Future


def read_results(text: str) -> dict[str, dict | None]:
    """custom_id → reply body (None: an error line or a non-200 reply) of a batch output or
    error file."""
    out: dict[str, dict | None] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            continue
        response = item.get("response") or {}
        ok = response.get("status_code") == 200 and isinstance(response.get("body"), dict)
        out[item.get("custom_id")] = response["body"] if ok else None
    return out


class BatchQueue:
    """Collects chat requests and sends them as batches, one per endpoint per round."""

    def __init__(self, ledger: BatchLedger, files_dir: Path, poll_s: float,
                 max_poll_s: float, completion_window: str,
                 note: Callable[[str], None] = log.info, offline: bool = False):
        self.ledger, self.files_dir, self.note = ledger, Path(files_dir), note
        self.offline = offline  # write batch files for an offline runner, submit nothing
        self.poll_s, self.max_poll_s, self.window = poll_s, max_poll_s, completion_window
        self._waiting: dict[HTTPEndpoint, list[_Waiting]] = {}
        self._last = 0.0
        self._flusher: asyncio.Task | None = None
        self._rounds: set[asyncio.Task] = set()
        self.submitted = self.resumed = 0  # batches this invocation created / picked up again

    async def call(self, endpoint: HTTPEndpoint, key: str, body: dict) -> dict | None:
        """The reply body to ``body`` from a batch; None when the batch did not answer it."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(key, body, loop.create_future())
        self._waiting.setdefault(endpoint, []).append(waiting)
        self._last = loop.time()
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_when_settled())
        return await waiting.future

    async def _flush_when_settled(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            await asyncio.sleep(SETTLE_S)
            if loop.time() - self._last < SETTLE_S:
                continue
            groups, self._waiting = self._waiting, {}
            for endpoint, items in groups.items():
                task = loop.create_task(self._round(endpoint, items))
                self._rounds.add(task)
                task.add_done_callback(self._rounds.discard)

    async def _round(self, endpoint: HTTPEndpoint, items: list[_Waiting]) -> None:
        """Answer ``items``: poll the batches they already went out in (a resumed run),
        submit the rest; a failure answers None (online) instead of stalling the run."""
        by_key: dict[str, list[_Waiting]] = {}
        for w in items:
            by_key.setdefault(w.key, []).append(w)
        known = self.ledger.submitted(endpoint.base_url, list(by_key))
        resume: dict[str, list[str]] = {}
        for key, batch_id in known.items():
            resume.setdefault(batch_id, []).append(key)
        fresh = [k for k in by_key if k not in known]
        collect, submit = ((self._read_output, self._write_input) if self.offline else
                           (self._collect, self._submit_and_collect))
        jobs = [collect(endpoint, b, keys) for b, keys in resume.items()]
        for b, keys in resume.items():
            self.note(f"batch {b}: {len(keys)} requests already submitted; "
                      + ("reading its output" if self.offline else "polling it again"))
        self.resumed += len(resume)
        for i in range(0, len(fresh), MAX_REQUESTS):
            jobs.append(submit(endpoint, fresh[i:i + MAX_REQUESTS], by_key))
        results: dict[str, dict | None] = {}
        pending: list[BatchFilesPending] = []
        for got in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(got, BatchFilesPending):
                pending.append(got)
            elif isinstance(got, BaseException):
                log.warning("batch round failed (%s): its requests go online", describe(got))
            else:
                results.update(got)
        waiting = BatchFilesPending("; ".join(map(str, pending))) if pending else None
        for key, ws in by_key.items():
            for w in ws:
                if w.future.done():
                    continue
                if waiting is not None and key not in results:
                    w.future.set_exception(waiting)  # its file has no output yet: stop
                else:
                    w.future.set_result(results.get(key))

    async def _write_input(self, endpoint: HTTPEndpoint, keys: list[str],
                           by_key: dict[str, list[_Waiting]]) -> dict[str, dict | None]:
        """Offline: the batch input file only (its name is the batch id)."""
        name = f"batch-{time.time_ns()}"
        self._write_lines(name + ".jsonl", keys, by_key)
        self.ledger.record(name, endpoint.base_url, name + ".jsonl", keys)
        self.submitted += 1
        return await self._read_output(endpoint, name, keys)

    async def _read_output(self, endpoint: HTTPEndpoint, name: str,
                           keys: list[str]) -> dict[str, dict | None]:
        """Offline: the replies in ``NAME.output.jsonl``; raises :class:`BatchFilesPending`
        with the command to run while it is not there."""
        inp, out = self.files_dir / f"{name}.jsonl", self.files_dir / f"{name}.output.jsonl"
        if not out.is_file():
            try:  # the model the requests name (vllm run-batch serves it)
                with inp.open() as f:
                    model = json.loads(f.readline())["body"]["model"]
            except (OSError, ValueError, KeyError):
                model = "MODEL"
            raise BatchFilesPending(
                f"batch input {inp} ({len(keys)} requests) has no output yet: run `vllm "
                f"run-batch -i {inp} -o {out} --model {model}` (or any OpenAI batch runner "
                "writing that file), then rerun the same command")
        results = read_results(out.read_text(errors="replace"))
        answered = sum(results.get(k) is not None for k in keys)
        self.note(f"batch {name}: read {answered} of {len(keys)} replies from {out.name}")
        return {k: results.get(k) for k in keys}

    def _write_lines(self, name: str, keys: list[str],
                     by_key: dict[str, list[_Waiting]]) -> Path:
        lines = "".join(json.dumps({"custom_id": k, "method": "POST",
                                    "url": "/v1/chat/completions",
                                    "body": by_key[k][0].body}) + "\n" for k in keys)
        self.files_dir.mkdir(parents=True, exist_ok=True)
        path = self.files_dir / name
        path.write_text(lines)
        return path

    async def _submit_and_collect(self, endpoint: HTTPEndpoint, keys: list[str],
                                  by_key: dict[str, list[_Waiting]]) -> dict[str, dict | None]:
        path = self._write_lines(f"input-{time.time_ns()}.jsonl", keys, by_key)
        uploaded = await endpoint.upload("/files", path.name, path.read_bytes(), "batch")
        batch = await endpoint.request("POST", "/batches", {
            "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
            "completion_window": self.window, "metadata": {"source": "robustft"}})
        self.ledger.record(batch["id"], endpoint.base_url, uploaded["id"], keys)
        self.submitted += 1
        self.note(f"batch {batch['id']}: {len(keys)} requests submitted ({path.name}); "
                  "polling")
        return await self._collect(endpoint, batch["id"], keys)

    async def _collect(self, endpoint: HTTPEndpoint, batch_id: str,
                       keys: list[str]) -> dict[str, dict | None]:
        """Poll ``batch_id`` with backoff until it ends; its replies to ``keys``."""
        delay, errors = self.poll_s, 0
        while True:
            try:
                batch = await endpoint.request("GET", f"/batches/{batch_id}")
                errors = 0
            except Exception as err:  # a failed poll is retried; too many give up
                errors += 1
                if errors >= MAX_POLL_ERRORS:
                    raise
                log.warning("polling batch %s failed (%s)", batch_id, describe(err))
                batch = {}
            status = batch.get("status")
            if status in FINAL:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self.max_poll_s)
        self.ledger.set_status(batch_id, status)
        self.note(f"batch {batch_id}: {status}")
        results: dict[str, dict | None] = {}
        for file_key in ("error_file_id", "output_file_id"):  # a success wins over an error
            if batch.get(file_key):
                raw = await endpoint.fetch("GET", f"/files/{batch[file_key]}/content")
                results.update(read_results(raw.decode(errors="replace")))
        answered = sum(results.get(k) is not None for k in keys)
        if answered < len(keys):
            log.warning("batch %s ended %s: %d of %d requests unanswered go online", batch_id,
                        status, len(keys) - answered, len(keys))
        return {k: results.get(k) for k in keys}

    def counts(self) -> dict[str, int]:
        return {"batches_submitted": self.submitted, "batches_resumed": self.resumed}

    async def aclose(self) -> None:
        tasks = [t for t in (self._flusher, *self._rounds) if t is not None and not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.ledger.close()
