"""``robustft view``: a local web page over a run directory (standard library HTTP server),
where people also review the agents' decisions.

Routes: ``/`` (the page), ``/static/viewer.js|review.js|audit.js|viewer.css``, ``/api/summary``,
``/api/samples?fate=&changed=&errors=&q=&sort=&order=&page=&size=``, ``/api/sample?id=``,
``/api/queue?index=&fate=&q=&unreviewed=`` (the review queue), ``POST /api/review``,
``/api/audit?index=`` (the blind audit sample: :mod:`robustft.viewer.audit`) and
``POST /api/audit``.
Everything it serves ships in ``robustft/viewer/web``: no CDN, no internet.

Writes are guarded: a POST needs the per-session token the page carries (a page on another
origin cannot read it), a JSON content type, an Origin (when sent) equal to the viewer's own,
and a body under ``MAX_BODY``. Bound to anything but loopback, every request needs the
password (HTTP Basic; the user name is the reviewer's name).
"""

from __future__ import annotations

import base64
import getpass
import hmac
import json
import os
import secrets
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from robustft.errors import UsageError
from robustft.pipeline.audit import audit_config, ensure_sample, summarize
from robustft.store.audit import AuditConflict, AuditStore
from robustft.store.reviews import ReviewConflict, ReviewStore, queue_ids
from robustft.store.runstore import RunStore
from robustft.viewer import audit as viewaudit
from robustft.viewer import data as viewdata

WEB = Path(str(files("robustft.viewer"))) / "web"
STATIC = {"viewer.js": "text/javascript", "review.js": "text/javascript",
          "audit.js": "text/javascript", "viewer.css": "text/css"}
MAX_BODY = 64 * 1024  # bytes of a review POST
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Viewer:
    """Serves one run directory; each thread reads through its own connection."""

    def __init__(self, run_dir: str | Path, port: int = 0, host: str = "127.0.0.1",
                 password: str | None = None, reviewer: str | None = None):
        RunStore.reader(run_dir).close()  # fail early on a non-run directory
        if host not in LOOPBACK and not password:
            raise UsageError(f"--host {host} opens the viewer (and its review writes) to the "
                             "network: give --password or set ROBUSTFT_VIEW_PASSWORD")
        self.run_dir, self.password = Path(run_dir), password
        self.reviewer = reviewer or os.environ.get("ROBUSTFT_REVIEWER")
        self.token = secrets.token_urlsafe(24)
        self.reviews = ReviewStore(self.run_dir)
        self.audit = AuditStore(self.run_dir)
        self._audit_lock, self._audit_drawn = threading.Lock(), None
        self._local = threading.local()
        self._queues: dict[tuple, list[str]] = {}
        viewer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, ctype: str, body: bytes, **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Content-Security-Policy", "default-src 'self'; "
                                 "style-src 'self' 'unsafe-inline'; img-src 'self' data:")
                for k, v in headers.items():
                    self.send_header(k.replace("_", "-"), v)
                self.end_headers()
                self.wfile.write(body)

            def _user(self) -> str | None:
                """The Basic-auth user when a password guards the viewer (None: refused)."""
                if viewer.password is None:
                    return ""
                auth = self.headers.get("Authorization", "")
                try:
                    user, _, given = base64.b64decode(auth.removeprefix("Basic ")).decode(
                        ).partition(":")
                except ValueError:
                    return None
                ok = auth.startswith("Basic ") and hmac.compare_digest(given, viewer.password)
                return user if ok else None

            def _guard(self) -> str | None:
                user = self._user()
                if user is None:
                    self._reply(401, "application/json", b'{"error": "password required"}',
                                WWW_Authenticate='Basic realm="robustft"')
                return user

            def do_GET(self):
                if self._guard() is None:
                    return
                try:
                    status, ctype, body = viewer.route(self.path)
                except Exception as e:  # a bad query must not kill the viewer
                    status, ctype, body = 500, "application/json", json.dumps(
                        {"error": f"{type(e).__name__}: {e}"}).encode()
                self._reply(status, ctype, body)

            def do_POST(self):
                user = self._guard()
                if user is None:
                    return
                status, body = viewer.post(self.path, self.headers, self.rfile, user)
                self._reply(status, "application/json", json.dumps(body, default=str).encode())

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:  # the port is taken, or the address is not this machine's
            raise UsageError(f"cannot serve on {host}:{port}: {e.strerror or e}; choose "
                             "another --port (0: any free one) or --host") from e
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def _store(self) -> RunStore:
        if getattr(self._local, "store", None) is None:
            self._local.store = RunStore.reader(self.run_dir)
        return self._local.store

    def route(self, path: str) -> tuple[int, str, bytes]:
        u = urlparse(path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        if u.path in ("/", "/index.html"):
            return 200, "text/html", page_html(token=self.token).encode()
        name = u.path.removeprefix("/static/")
        if name in STATIC:
            return 200, STATIC[name], (WEB / name).read_bytes()
        data: Any
        if u.path == "/api/summary":
            self._draw_audit()
            data = viewdata.summary(self._store())
        elif u.path == "/api/samples":
            try:
                data = viewdata.samples_page(
                    self._store(), {k: q[k] for k in viewdata.FILTERS if k in q},
                    q.get("sort", "row"), q.get("order", "asc"), int(q.get("page", 1)),
                    int(q.get("size", 50)))
            except ValueError as e:
                return 400, "application/json", json.dumps({"error": str(e)}).encode()
        elif u.path == "/api/sample":
            data = viewdata.sample_detail(self._store(), q.get("id", ""), self.reviews)
            if data is None:
                return 404, "application/json", b'{"error": "no such sample"}'
        elif u.path == "/api/queue":
            method = self._store().get_meta("method") or "robustft"
            data = viewdata.queue_entry(
                self._queue(q.get("fate", ""), q.get("q", ""), method),
                self.reviews.reviewed_ids(), q.get("unreviewed") in ("1", "true"),
                int(q.get("index", 0)), method)
        elif u.path == "/api/audit":
            why = self._draw_audit()
            data = viewaudit.audit_entry(self._store(), self.audit, int(q.get("index", 0)),
                                         summarize(self._store(), self.audit,
                                                   audit_config(self.run_dir)))
            data["not_drawn"] = why
        else:
            return 404, "application/json", b'{"error": "not found"}'
        return 200, "application/json", json.dumps(data, default=str).encode()

    def _version(self) -> tuple[int, ...]:
        """Changes when the run's traces change (a rerun of curate)."""
        return tuple(p.stat().st_mtime_ns for p in (self.run_dir / "run.sqlite",
                                                    self.run_dir / "run.sqlite-wal")
                     if p.exists())

    def _draw_audit(self) -> str | None:
        """Draw the audit sample when it is missing (once per version of the traces);
        returns why it is not drawn (an unfinished run), or None."""
        with self._audit_lock:
            version = self._version()
            if self._audit_drawn != version:
                why = ensure_sample(self._store(), self.audit, audit_config(self.run_dir))
                self._audit_drawn = None if why else version
                return why
        return None

    def _queue(self, fate: str, query: str, method: str) -> list[str]:
        """The review queue's ids in order, computed once per filter while the run's traces
        are unchanged (a rerun of curate changes them)."""
        version = self._version()
        key = (fate, query, method, version)
        if key not in self._queues:
            self._queues = {k: v for k, v in self._queues.items() if k[3] == version}
            self._queues[key] = queue_ids(self._store().db, {"fate": fate, "q": query}, method)
        return self._queues[key]

    def post(self, path: str, headers, body, user: str) -> tuple[int, dict[str, Any]]:
        """``POST /api/review`` or ``/api/audit``: (status, JSON reply). Refused without the
        session token, with a foreign Origin, a non-JSON body or one over ``MAX_BODY``."""
        route = urlparse(path).path
        if route not in ("/api/review", "/api/audit"):
            return 404, {"error": "not found"}
        origin, host = headers.get("Origin"), headers.get("Host", "")
        if origin is not None and origin != f"http://{host}":
            return 403, {"error": f"cross-origin write refused (Origin {origin})"}
        if not hmac.compare_digest(headers.get("X-Robustft-Token", ""), self.token):
            return 403, {"error": "missing or wrong session token: reload the page"}
        if not headers.get("Content-Type", "").startswith("application/json"):
            return 415, {"error": "a review or verdict is sent as application/json"}
        size = int(headers.get("Content-Length") or 0)
        if size > MAX_BODY:
            return 413, {"error": f"body of {size} bytes is over the {MAX_BODY} byte limit"}
        try:
            req = json.loads(body.read(size))
            if route == "/api/audit":
                return 200, {"entry": viewaudit.save_verdict(
                    self._store(), self.audit, req, self.reviewer or user or getpass.getuser())}
            review = viewdata.save_review(
                self._store(), self.reviews, req,
                self.reviewer or user or getpass.getuser())
        except AuditConflict as e:
            return 409, {"error": f"conflict: {e}; reload to see it"}
        except ReviewConflict as e:
            return 409, {"error": f"conflict: {e}; reload to see it",
                         "current": asdict(e.current)}
        except (ValueError, KeyError, TypeError) as e:
            return 400, {"error": str(e)}
        return 200, {"review": review}

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> Viewer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.reviews.close()
        self.audit.close()


def page_html(inline: dict[str, Any] | None = None, token: str = "") -> str:
    """The page (carrying the session ``token`` for review writes); with ``inline`` data, a
    self-contained static file (CSS, JS and data inside; read-only)."""
    html = (WEB / "index.html").read_text()
    if inline is None:
        return html.replace('content="" id="token"', f'content="{token}" id="token"')
    data = json.dumps(inline, default=str).replace("<", "\\u003c")  # no tag in the data
    css = (WEB / "viewer.css").read_text()
    js = "\n".join((WEB / f).read_text() for f in ("review.js", "audit.js", "viewer.js"))
    js = js.replace("</script", "<\\/script")
    return (html.replace('<link rel="stylesheet" href="/static/viewer.css">',
                         f"<style>\n{css}\n</style>")
            .replace('<script src="/static/review.js"></script>\n', "")
            .replace('<script src="/static/audit.js"></script>\n', "")
            .replace('<script src="/static/viewer.js"></script>',
                     f"<script>window.STATIC_RUN = {data};</script>\n"
                     f"<script>\n{js}\n</script>"))


def write_report(run_dir: str | Path, out: str | Path, limit: int = 5000) -> int:
    """``robustft report``: summary plus every sample whose label changed or that a person
    reviewed, in one HTML file. Returns the number of samples included."""
    store = RunStore.reader(run_dir)
    try:
        changed = viewdata.report_samples(store, limit)
        data = {"summary": viewdata.summary(store), "samples": changed}
    finally:
        store.close()
    Path(out).write_text(page_html(data))
    return len(changed)
