"""``robustft view``: a local web page over a run directory (standard library HTTP server).

Routes: ``/`` (the page), ``/static/viewer.js|viewer.css``, ``/api/summary``,
``/api/samples?fate=&changed=&errors=&q=&sort=&order=&page=&size=``, ``/api/sample?id=``.
Everything it serves ships in ``robustft/web``: no CDN, no internet.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from robustft.store.runstore import RunStore
from robustft.viewer import data as viewdata

WEB = Path(str(files("robustft.viewer"))) / "web"
STATIC = {"viewer.js": "text/javascript", "viewer.css": "text/css"}


class Viewer:
    """Serves one run directory on 127.0.0.1; each thread reads through its own connection."""

    def __init__(self, run_dir: str | Path, port: int = 0, host: str = "127.0.0.1"):
        RunStore.reader(run_dir).close()  # fail early on a non-run directory
        self.run_dir = Path(run_dir)
        self._local = threading.local()
        viewer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                try:
                    status, ctype, body = viewer.route(self.path)
                except Exception as e:  # a bad query must not kill the viewer
                    status, ctype, body = 500, "application/json", json.dumps(
                        {"error": f"{type(e).__name__}: {e}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
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
            return 200, "text/html", page_html().encode()
        name = u.path.removeprefix("/static/")
        if name in STATIC:
            return 200, STATIC[name], (WEB / name).read_bytes()
        data: Any
        if u.path == "/api/summary":
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
            data = viewdata.sample_detail(self._store(), q.get("id", ""))
            if data is None:
                return 404, "application/json", b'{"error": "no such sample"}'
        else:
            return 404, "application/json", b'{"error": "not found"}'
        return 200, "application/json", json.dumps(data, default=str).encode()

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> Viewer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def page_html(inline: dict[str, Any] | None = None) -> str:
    """The page; with ``inline`` data, a self-contained static file (CSS, JS and data inside)."""
    html = (WEB / "index.html").read_text()
    if inline is None:
        return html
    data = json.dumps(inline, default=str).replace("</", "<\\/")
    css, js = (WEB / "viewer.css").read_text(), (WEB / "viewer.js").read_text()
    js = js.replace("</script", "<\\/script")
    return (html.replace('<link rel="stylesheet" href="/static/viewer.css">',
                         f"<style>\n{css}\n</style>")
            .replace('<script src="/static/viewer.js"></script>',
                     f"<script>window.STATIC_RUN = {data};</script>\n"
                     f"<script>\n{js}\n</script>"))


def write_report(run_dir: str | Path, out: str | Path, limit: int = 5000) -> int:
    """``robustft report``: summary plus every sample whose label changed, in one HTML file.
    Returns the number of samples included."""
    store = RunStore.reader(run_dir)
    try:
        changed = viewdata.changed_samples(store, limit)
        data = {"summary": viewdata.summary(store), "samples": changed}
    finally:
        store.close()
    Path(out).write_text(page_html(data))
    return len(changed)
