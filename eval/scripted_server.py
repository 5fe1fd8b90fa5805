"""A small scripted OpenAI-compatible HTTP server on 127.0.0.1, for tests and benchmarks.

A *script* maps each chat request body to a :class:`Reply`; the server tokenises the reply text
and returns ``choices[0].logprobs.content[].top_logprobs`` in the OpenAI shape, with the answer
token's alternatives drawn from ``Reply.dist``. ``faults`` queues HTTP errors to answer the next
requests with; a script may also return a :class:`Fault` for one request. Every request body
is recorded in ``requests``. A script that raises ``LookupError`` (no answer for this request)
gets its message back as HTTP 400. Like llama-server, the server answers any model name;
``GET /models`` lists ``models`` (by default :data:`MODELS`, the names the tests use), which
robustft's pre-flight check reads.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# the model names the tests and benchmarks ask a default server for (GET /models lists them)
MODELS = ["scripted", "m", "m-direct", "m-sampler", "m-certainty", "m-corrector", "m-judge"]
_TOKEN = re.compile(r"\s?[A-Za-z]+|\s?\d|\s?[^\sA-Za-z\d]|\s+")


@dataclass
class Reply:
    text: str
    dist: dict[str, float] | None = None  # answer-token alternatives (letter -> probability)
    usage: bool = True
    # a reasoning model: its thinking, sent as message.reasoning_content or inline in
    # <think>…</think> (``inline``); logprobs then cover thinking and answer, as vLLM's do.
    # ``truncated``: cut by max_tokens inside the thinking (finish_reason "length").
    thinking: str | None = None
    inline: bool = False
    truncated: bool = False
    # character ranges [start, end) of ``text`` whose tokens carry probability p (the
    # chosen token gets p, two stand-in alternatives share 1 − p): how sure the model is of
    # the words there (e.g. the words a correction changed). Other tokens stay near-certain.
    spans: list[tuple[int, int, float]] | None = None


@dataclass
class Fault:
    """An HTTP reply to send instead of a completion. ``truncate``: announce a longer body
    than is sent, then drop the connection. ``delay_s``: wait first (for timeouts)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"error": {"message": "scripted fault"}}'
    truncate: bool = False
    delay_s: float = 0.0


class FaultReply(Exception):
    """A script returned a :class:`Fault` for this request."""

    def __init__(self, fault: Fault):
        super().__init__(fault.status)
        self.fault = fault


GARBAGE = Fault(200, body="<html>upstream proxy error</html>")
TRUNCATED = Fault(200, body='{"id": "x", "choices": [{"index": 0, "mess', truncate=True)
NO_CHOICES = Fault(200, body='{"id": "x", "object": "chat.completion", "created": 0, '
                             '"model": "m", "choices": []}')


def tokens_of(text: str) -> list[str]:
    return _TOKEN.findall(text)


_ALTS = ("~alt1", "~alt2")  # stand-in alternatives of a token in a span


def _span_prob(spans: list[tuple[int, int, float]], start: int, end: int) -> float | None:
    """The probability of the first span the token [start, end) overlaps (None: none)."""
    return next((p for s, e, p in spans if start < e and s < end), None)


def _logprobs(text: str, dist: dict[str, float] | None, top_n: int,
              spans: list[tuple[int, int, float]] | None = None) -> dict[str, Any]:
    toks = tokens_of(text)
    answer_at = None
    m = list(re.finditer(r'(?:Answer:\s*|"answer":\s*")([A-Za-z])\b', text))
    if m and dist:
        pos, offset = 0, m[-1].start(1)
        for i, t in enumerate(toks):
            if pos <= offset < pos + len(t):
                answer_at = i
            pos += len(t)
    content, pos = [], 0
    for i, t in enumerate(toks):
        pos, at = pos + len(t), pos
        p = _span_prob(spans, at, at + len(t)) if spans and t.strip() else None
        if i == answer_at:
            letter = t.strip()
            alts = sorted(dist.items(), key=lambda kv: -kv[1])
            top = [{"token": (" " if t.startswith(" ") else "") + k, "logprob": math.log(p),
                    "bytes": None} for k, p in alts if p > 0][:top_n]
            lp = math.log(dist.get(letter, 1e-9))
        elif p is not None:
            lp = math.log(p)
            top = [{"token": tok, "logprob": q, "bytes": None}
                   for tok, q in ((t, lp), *((a, math.log(max((1 - p) / 2, 1e-9)))
                                             for a in _ALTS))][:top_n]
        else:
            lp = -0.01
            top = [{"token": t, "logprob": lp, "bytes": None}][:top_n]
        content.append({"token": t, "logprob": lp, "bytes": None, "top_logprobs": top})
    return {"content": content}


def held_to_schema(reply: Reply, response_format: dict) -> Reply:
    """The reply a constrained decoder gives for a JSON schema from :func:`answer_format`: the
    script's answer letter (the first allowed one when it has none) and, for a "reasoning"
    schema, the text before the answer line."""
    schema = response_format["json_schema"]["schema"]
    allowed = schema["properties"]["answer"]["enum"]
    found = re.findall(r"Answer:\s*([A-Za-z])\b", reply.text)
    letter = found[-1] if found and found[-1] in allowed else allowed[0]
    obj = {"answer": letter}
    if "reasoning" in schema["properties"]:
        obj = {"reasoning": reply.text.rsplit("Answer:", 1)[0].strip(), **obj}
    return Reply(json.dumps(obj), reply.dist, reply.usage)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512  # a client opening 64+ connections at once is not refused


class ScriptedServer:
    def __init__(self, script: Callable[[dict], Reply], models: list[str] | None = None,
                 delay_s: float = 0.0, gate_after: int | None = None,
                 die_after: int | None = None, rate_limit: tuple[int, float] | None = None,
                 structured: str | None = None):
        self.script, self.models, self.delay_s = script, models or list(MODELS), delay_s
        # a request's response_format: "accept" (hold the reply to it), "reject" (HTTP 400,
        # as endpoints without structured outputs do) or None (ignored, replied in free text)
        self.structured = structured
        self.requests: list[dict] = []
        self.delivered: list[str] = []  # canonical bodies of requests answered with a reply
        self.faults: deque[Fault] = deque()
        self.gate_after = gate_after  # after this many deliveries, hold every request unanswered
        self.held = self.admitted = 0
        self.die_after = die_after  # after this many deliveries, die (as if the process crashed)
        self.dead = False
        # (N, window s): above N requests in any window, 429 with the Retry-After to wait
        self.rate_limit, self.limited, self.admitted_at = rate_limit, 0, deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _dead(self) -> bool:
                """A dead server drops every request unanswered, kept-alive ones too."""
                if server.dead:
                    self.close_connection = True
                return server.dead

            def do_GET(self):
                if self._dead():
                    return
                if (routed := server.route("GET", self.path, b"", self.headers)) is not None:
                    self._send(*routed)
                    return
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [
                        {"id": m, "object": "model", "owned_by": "test"}
                        for m in server.models]}))
                else:
                    self._send(404, '{"error": "not found"}')

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self._dead():
                    return
                if (routed := server.route("POST", self.path, raw, self.headers)) is not None:
                    self._send(*routed)
                    return
                body = json.loads(raw)
                with server._lock:
                    server.requests.append(body)
                    fault = server.faults.popleft() if server.faults else None
                    hold = server.gate_after is not None and server.admitted >= server.gate_after
                    server.held += hold
                    server.admitted += not hold
                if (wait := server._over_limit()) is not None:
                    self._send(429, '{"error": {"message": "rate limit"}}',
                               {"Retry-After": f"{wait:.3f}"})
                    return
                if hold:  # never answered: the connection closes when the server stops
                    server._stop.wait()
                    self.close_connection = True
                    return
                if fault:
                    time.sleep(fault.delay_s)
                    if fault.truncate:
                        data = fault.body.encode()
                        self.send_response(fault.status)
                        self.send_header("Content-Length", str(len(data) + 100))
                        self.end_headers()
                        self.wfile.write(data)
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self._send(fault.status, fault.body, fault.headers)
                    return
                if server.delay_s:
                    time.sleep(server.delay_s)
                if self.path.rstrip("/").endswith("/embeddings"):
                    self._send(200, json.dumps(embeddings_reply(body)))
                    return
                legacy = not self.path.rstrip("/").endswith("/chat/completions")
                try:
                    reply = server.complete_text(body) if legacy else server.complete(body)
                except LookupError as e:  # the script has no answer: a client error
                    self._send(400, json.dumps({"error": {"message": str(e)}}))
                    return
                except FaultReply as e:  # the script's fault for this request
                    time.sleep(e.fault.delay_s)
                    self._send(e.fault.status, e.fault.body, e.fault.headers)
                    return
                self._send(200, json.dumps(reply))
                with server._lock:
                    server.delivered.append(json.dumps(body, sort_keys=True))
                    if server.die_after is not None and len(server.delivered) >= server.die_after \
                            and not server.dead:
                        threading.Thread(target=server.die, daemon=True).start()
                        server.dead = True

        self._handler = Handler
        self.httpd = _HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def route(self, method: str, path: str, raw: bytes, headers) -> tuple[int, str] | None:
        """(status, body) for a request this server handles itself; None: the chat,
        completion and embedding endpoints answer it (a subclass adds endpoints here)."""
        return None

    def _over_limit(self) -> float | None:
        """Seconds until a request fits the rate limit (None: it fits and is admitted)."""
        if self.rate_limit is None:
            return None
        n, window = self.rate_limit
        with self._lock:
            now = time.monotonic()
            while self.admitted_at and self.admitted_at[0] <= now - window:
                self.admitted_at.popleft()
            if len(self.admitted_at) >= n:
                self.limited += 1
                return max(self.admitted_at[0] + window - now, 0.001)
            self.admitted_at.append(now)
            return None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def complete_text(self, body: dict) -> dict:
        """``/v1/completions``: the script sees the raw prompt as one user message."""
        reply = self.script({**body, "messages": [{"role": "user", "content": body["prompt"]}]})
        return {"id": "cmpl-test", "object": "text_completion", "created": 0,
                "model": body.get("model", self.models[0]),
                "choices": [{"index": 0, "text": reply.text, "finish_reason": "stop"}]}

    def complete(self, body: dict) -> dict:
        fmt = body.get("response_format")
        if fmt is not None and self.structured == "reject":
            raise LookupError("unsupported parameter: response_format")
        reply = self.script(body)
        if isinstance(reply, Fault):
            raise FaultReply(reply)
        if fmt is not None and self.structured == "accept":
            reply = held_to_schema(reply, fmt)
        content, generated, extra = reply.text, reply.text, {}
        shift = 0  # where reply.text starts in the generated text (for its spans)
        if reply.thinking is not None:
            answer = "" if reply.truncated else reply.text
            if reply.inline:
                content = f"<think>{reply.thinking}" + ("" if reply.truncated else
                                                         f"</think>{answer}")
                generated, shift = content, len(f"<think>{reply.thinking}</think>")
            else:
                content, extra = answer, {"reasoning_content": reply.thinking}
                generated, shift = reply.thinking + answer, len(reply.thinking)
        choice: dict[str, Any] = {
            "index": 0, "finish_reason": "length" if reply.truncated else "stop",
            "message": {"role": "assistant", "content": content, **extra}}
        if body.get("logprobs"):
            spans = None if reply.truncated or not reply.spans else [
                (s + shift, e + shift, p) for s, e, p in reply.spans]
            choice["logprobs"] = _logprobs(generated, None if reply.truncated else reply.dist,
                                           body.get("top_logprobs") or 1, spans)
        out = {"id": "chatcmpl-test", "object": "chat.completion", "created": 0,
               "model": body.get("model", self.models[0]), "choices": [choice]}
        if reply.usage:
            prompt = sum(len(m["content"].split()) for m in body["messages"])
            done = len(tokens_of(generated))
            out["usage"] = {"prompt_tokens": prompt, "completion_tokens": done,
                            "total_tokens": prompt + done}
            if reply.thinking is not None:
                out["usage"]["completion_tokens_details"] = {
                    "reasoning_tokens": len(tokens_of(reply.thinking))}
        return out

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def die(self) -> None:
        """Stop listening (new connections are refused) and drop requests on open connections
        unanswered, until :meth:`come_back`."""
        self.dead = True
        self.httpd.shutdown()
        self.httpd.server_close()

    def come_back(self) -> None:
        """Listen again on the same port."""
        self.dead, self.die_after = False, None
        port = self.httpd.server_address[1]
        self.httpd = _HTTPServer(("127.0.0.1", port), self._handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


def target_question(body: dict) -> str:
    """The question a request is about: the last ``Question: ...`` line of the user turn."""
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    return user.rsplit("Question: ", 1)[-1].split("\n", 1)[0].strip()


def mc_reply(letter: str, letters: list[str], confidence: float = 0.9,
             reasoning: str = "Checked each option carefully.") -> Reply:
    """A reply ending in ``Answer: letter`` whose answer token has ``confidence``."""
    rest = [x for x in letters if x != letter]
    dist = {letter: confidence, **{x: (1 - confidence) / len(rest) for x in rest}}
    return Reply(f"{reasoning}\nAnswer: {letter}", dist)


def parity(body: dict) -> Reply:
    """Script for benchmarks: questions 'Is N even?' answered truthfully, varied confidence."""
    n = int(target_question(body).split()[1])
    return mc_reply("A" if n % 2 == 0 else "B", ["A", "B"], confidence=0.6 + (n % 7) / 20)


def any_choice(body: dict) -> Reply:
    """Script for benchmarks on any multiple-choice data: a letter A-D chosen from a hash of
    the question, with a confidence that varies by question."""
    h = int(hashlib.sha256(target_question(body).encode()).hexdigest()[:8], 16)
    return mc_reply("ABCD"[h % 4], list("ABCD"), confidence=0.4 + (h % 11) / 20)


EMBED_DIM = 64


def hashed_vector(text: str) -> list[float]:
    """A deterministic bag-of-words embedding (words hashed into ``EMBED_DIM`` buckets,
    L2-normalised): texts sharing words are near each other."""
    v = [0.0] * EMBED_DIM
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        v[int(hashlib.md5(word.encode()).hexdigest()[:6], 16) % EMBED_DIM] += 1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def embeddings_reply(body: dict) -> dict:
    """``/v1/embeddings`` in the OpenAI shape, for a string or a list of strings."""
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    return {"object": "list", "model": body.get("model", "scripted"),
            "data": [{"object": "embedding", "index": i, "embedding": hashed_vector(t)}
                     for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": sum(len(t.split()) for t in texts),
                      "total_tokens": sum(len(t.split()) for t in texts)}}


SCRIPTS = {"parity": parity, "any_choice": any_choice}


def write_parity_rows(path, n: int) -> None:
    """``n`` JSONL rows for the parity script, every third label flipped (benchmarks)."""
    with open(path, "w") as f:
        for i in range(n):
            wrong, even = i % 3 == 0, i % 2 == 0
            f.write(json.dumps({"id": f"p{i}", "question": f"Is {i} even?",
                                "options": ["yes", "no"],
                                "answer": "A" if even != wrong else "B"}) + "\n")
