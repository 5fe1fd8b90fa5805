"""The scripted server in its own process, on asyncio, for benchmarks:
``python -m eval.fast_server DELAY_S [SCRIPT] [fast]`` prints its base URL, then serves."""

from __future__ import annotations

import json
from collections.abc import Callable

from eval.scripted_server import SCRIPTS, Reply, ScriptedServer, embeddings_reply


def serve_fast(script: Callable[[dict], Reply], delay_s: float) -> None:
    """Serve ``script`` until killed on an aiohttp (asyncio) server whose replies are memoised
    per request body: a benchmark's server must cost far less CPU than the client it
    measures (a thread per connection does not, at 300+ requests/s on 2 cores). Prints the
    base URL first."""
    import asyncio

    from aiohttp import web

    replies: dict[bytes, bytes] = {}
    helper = ScriptedServer(script)  # its reply builders only; never started

    async def chat(request: web.Request) -> web.Response:
        raw = await request.read()
        if raw not in replies:
            replies[raw] = json.dumps(helper.complete(json.loads(raw))).encode()
        await asyncio.sleep(delay_s)
        return web.Response(body=replies[raw], content_type="application/json")

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(delay_s)
        return web.json_response(embeddings_reply(body))

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "test"} for m in helper.models]})

    async def main() -> None:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_post("/v1/embeddings", embeddings)
        app.router.add_get("/v1/models", models)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        print(f"http://127.0.0.1:{port}/v1", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_in_subprocess(delay_s: float = 0.0, script: str = "parity", fast: bool = False):
    """Start a server playing one of ``SCRIPTS`` in its own process (no GIL shared with the
    client under test); returns (process, base_url). Stop it with ``process.terminate()``."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "eval.fast_server", str(delay_s), script,
                             *(["fast"] if fast else [])], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


if __name__ == "__main__":
    import sys

    script = SCRIPTS[sys.argv[2] if len(sys.argv) > 2 else "parity"]
    if sys.argv[3:] == ["fast"]:
        serve_fast(script, float(sys.argv[1]))
    with ScriptedServer(script, delay_s=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0) as s:
        print(s.base_url, flush=True)
        s.thread.join()
