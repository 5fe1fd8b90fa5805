"""The scripted server with OpenAI's Batch API: ``POST /v1/files`` (multipart, purpose
``batch``), ``POST /v1/batches``, ``GET /v1/batches/{id}`` and ``GET /v1/files/{id}/content``.

A batch stays ``in_progress`` for ``complete_after_s`` after its creation; the poll after
that answers every request line with the script (as ``/v1/chat/completions`` would) into an
output file. The first ``expire`` requests of the first batch to finish end in its error
file with code ``batch_expired`` and the batch ``expired`` (as when OpenAI's window runs out).
"""

from __future__ import annotations

import itertools
import json
import time
from email.parser import BytesParser
from email.policy import HTTP

from eval.scripted_server import ScriptedServer


class BatchServer(ScriptedServer):
    def __init__(self, script, complete_after_s: float = 0.0, expire: int = 0, **kw):
        super().__init__(script, **kw)
        self.complete_after_s, self.expire = complete_after_s, expire
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.polls = 0
        self.batched: list[dict] = []  # request bodies answered through batches
        self._ids = itertools.count(1)

    def route(self, method: str, path: str, raw: bytes, headers) -> tuple[int, str] | None:
        p = path.split("?")[0].rstrip("/")
        with self._lock:
            if method == "POST" and p.endswith("/v1/files"):
                return self._upload(raw, headers["Content-Type"])
            if method == "POST" and p.endswith("/v1/batches"):
                return self._create(json.loads(raw))
            if method == "GET" and "/v1/batches/" in p:
                batch = self.batches.get(p.rsplit("/", 1)[1])
                if batch is None:
                    return 404, '{"error": {"message": "no such batch"}}'
                self.polls += 1
                return 200, json.dumps(self._advance(batch))
            if method == "GET" and "/v1/files/" in p and p.endswith("/content"):
                content = self.files.get(p.split("/")[-2])
                return (200, content.decode()) if content is not None else (
                    404, '{"error": {"message": "no such file"}}')
        return None

    def _upload(self, raw: bytes, content_type: str) -> tuple[int, str]:
        msg = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        parts = {part.get_param("name", header="content-disposition"): part
                 for part in msg.iter_parts()}
        if "file" not in parts or parts.get("purpose") is None or \
                parts["purpose"].get_content().strip() != "batch":
            return 400, '{"error": {"message": "need a file with purpose=batch"}}'
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = parts["file"].get_payload(decode=True)
        return 200, json.dumps({"id": file_id, "object": "file", "purpose": "batch",
                                "bytes": len(self.files[file_id])})

    def _create(self, body: dict) -> tuple[int, str]:
        if body.get("input_file_id") not in self.files:
            return 400, '{"error": {"message": "unknown input_file_id"}}'
        batch_id = f"batch-{next(self._ids)}"
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"),
            "input_file_id": body["input_file_id"], "status": "in_progress",
            "created_at": time.time(), "completion_window": body.get("completion_window"),
            "output_file_id": None, "error_file_id": None}
        return 200, json.dumps(self.batches[batch_id])

    def _advance(self, batch: dict) -> dict:
        """Run the batch once its time has come: every line answered by the script, except
        the first ``expire`` lines of the first batch to finish."""
        if batch["status"] != "in_progress" or \
                time.time() < batch["created_at"] + self.complete_after_s:
            return batch
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].splitlines() if x]
        expire, self.expire = self.expire, 0  # the first batch to finish expires them
        out, errors = [], []
        for i, line in enumerate(lines):
            if i < expire:
                errors.append({"id": f"req-{i}", "custom_id": line["custom_id"],
                               "response": None, "error": {
                                   "code": "batch_expired",
                                   "message": "not completed within the window"}})
                continue
            try:
                response = {"status_code": 200, "body": self.complete(line["body"])}
                self.batched.append(line["body"])
            except LookupError as e:  # the endpoint refuses this request
                response = {"status_code": 400, "body": {"error": {"message": str(e)}}}
            out.append({"id": f"req-{i}", "custom_id": line["custom_id"],
                        "response": response, "error": None})
        batch["output_file_id"] = self._store(out)
        batch["error_file_id"] = self._store(errors) if errors else None
        batch["status"] = "expired" if errors else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(out),
                                   "failed": len(errors)}
        return batch

    def _store(self, items: list[dict]) -> str:
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = "".join(json.dumps(x) + "\n" for x in items).encode()
        return file_id
