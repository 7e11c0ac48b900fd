"""Work accounting a user can trust: nothing stranded after a crash, nothing half-done counted as
done, every failure explained, oversized input refused. Real `carealign` subprocesses, real SQLite
and PostgreSQL, the fake server with injected faults."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from carealign.cli import app
from store import Store
from store.models import LLMCall, Run, WorkItem
from tests.fake_server import FakeOpenAIServer, Reply
from tests.helpers import write_jsonl
from tests.test_generate import scripted

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [{"prompt": f"Question {i}: how should asthma inhaler {i} be used?"} for i in range(30)]
SCORES = {0: 9, 1: 2, 2: 5}


def carealign(db: str, base_url: str, *args: str, stdout: int = subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "carealign.cli", "--db", db, "--base-url", base_url, *args],
                            cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True)


def exported(db: str, out: Path) -> list[str]:
    res = CliRunner().invoke(app, ["--db", db, "db", "export", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return sorted(out.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_at_random_moments_strands_nothing(backend, tmp_path, request):
    """kill -9 ten times at random moments, with the default lease: each restart takes the dead
    worker's items over at once, no restarted run reports 'completed' while items are held, no run
    stays 'running', and the pairs equal those of an uninterrupted run."""
    src = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    db = f"sqlite:///{tmp_path / 'drill.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    rng = random.Random(7)
    with FakeOpenAIServer(latency=0.05) as server:
        server.responder = scripted(SCORES)
        for _ in range(10):
            before = len(server.requests)
            proc = carealign(db, server.base_url, "generate", str(src), "--n", "3")
            target, deadline = before + rng.randint(1, 40), time.monotonic() + 60
            while len(server.requests) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        final = carealign(db, server.base_url, "generate", str(src), "--n", "3")
        assert final.wait(timeout=300) == 0, final.stderr.read()

        whole = f"sqlite:///{tmp_path / 'whole.db'}"
        once = carealign(whole, server.base_url, "generate", str(src), "--n", "3")
        assert once.wait(timeout=300) == 0, once.stderr.read()

    with Store(db).session() as s:
        items = s.scalars(select(WorkItem)).all()
        runs = s.scalars(select(Run)).all()
        assert len(items) == len(QUESTIONS) and {w.status for w in items} == {"done"}
        assert "running" not in {r.status for r in runs}
        for r in runs:
            if r.status == "completed":  # its whole input was done when it said so
                held = r.stats["input_items"]
                assert held["pending"] == held["claimed"] == 0
    pairs = exported(db, tmp_path / "drill.jsonl")
    assert len(pairs) == len(set(pairs)) == len(QUESTIONS)
    assert pairs == exported(whole, tmp_path / "whole.jsonl")


def test_a_restart_marks_the_killed_run_dead_and_runs_list_says_so(tmp_path):
    src = write_jsonl(tmp_path / "q.jsonl", QUESTIONS[:10])
    db = f"sqlite:///{tmp_path / 'dead.db'}"
    with FakeOpenAIServer(latency=0.2) as server:
        server.responder = scripted(SCORES)
        proc = carealign(db, server.base_url, "generate", str(src), "--n", "3")
        deadline = time.monotonic() + 60
        while len(server.requests) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(server.requests) >= 5, "the worker never got going"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        listed = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--db", db, "runs", "list"])
        assert listed.exit_code == 0 and " dead " in listed.stdout and "running" not in listed.stdout
        with Store(db).session() as s:
            held = s.scalars(select(WorkItem).where(WorkItem.status == "claimed")).all()
            assert held  # the dead worker's claims, until someone takes them over
        restart = carealign(db, server.base_url, "generate", str(src), "--n", "3", stdout=subprocess.PIPE)
        out, _ = restart.communicate(timeout=120)
        assert restart.returncode == 0 and "took over" in out and "1 runs marked dead" in out
    with Store(db).session() as s:
        statuses = sorted(r.status for r in s.scalars(select(Run)))
        assert statuses == ["completed", "dead"]
        dead = s.scalars(select(Run).where(Run.status == "dead")).one()
        assert "is gone" in dead.error


def _faulty(rate: float, timeout_delay: float):
    """A fault for about ``rate`` of the requests, the same for the same request and attempt."""
    attempts: dict[str, int] = {}

    def fault(body: dict) -> Reply | None:
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        attempts[key] = attempts.get(key, 0) + 1
        draw = random.Random(f"{key}:{attempts[key]}").random()
        if draw >= rate:
            return None
        kind = int(draw / rate * 4)
        return [Reply(status=429, headers={"Retry-After": "0"}), Reply(status=500),
                Reply(delay=timeout_delay), Reply(raw_body="{not json")][kind]

    return fault


def test_injected_faults_leave_every_item_explained_and_a_rerun_makes_only_the_missing_calls(tmp_path):
    """20% of requests get a 429, a 500, a timeout or a malformed body (no retries, so each is a failed
    call): every item ends done, partial or failed, each with its reason; a re-run without faults
    brings every item to done making exactly the calls that had failed."""
    src = write_jsonl(tmp_path / "q.jsonl", QUESTIONS[:20])
    db = str(tmp_path / "faults.db")
    cfg = tmp_path / "c.toml"
    cfg.write_text("max_retries = 0\ntimeout = 1.0\n")
    with FakeOpenAIServer() as server:
        server.responder = scripted(SCORES)
        server.fault = _faulty(0.2, timeout_delay=1.5)
        res = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--config", str(cfg), "--db", db, "--base-url",
                                                             server.base_url, "generate", str(src), "--n", "3"])
        assert res.exit_code == 0, res.output
        assert "items not done" in res.stdout and "e.g. item" in res.stdout  # the reasons are shown
        with Store(db).session() as s:
            items = s.scalars(select(WorkItem)).all()
            assert {w.status for w in items} <= {"done", "partial", "failed"}
            assert all(w.error for w in items if w.status != "done")
            assert any(w.status == "partial" for w in items)
            failed_calls = {c.request_hash for c in s.scalars(select(LLMCall).where(LLMCall.ok.is_(False)))}
            ok_calls = {c.request_hash for c in s.scalars(select(LLMCall).where(LLMCall.ok.is_(True)))}
            first_run = s.scalars(select(Run)).one().id
        missing = failed_calls - ok_calls
        assert missing
        errors = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--db", db, "runs", "show",
                                                                first_run, "--errors"])
        assert errors.exit_code == 0 and "failed or partial items of this run" in errors.stdout

        server.fault = None
        res = CliRunner().invoke(app, ["--config", str(cfg), "--db", db, "--base-url", server.base_url,
                                       "generate", str(src), "--n", "3"])
        assert res.exit_code == 0, res.output
    with Store(db).session() as s:
        assert {w.status for w in s.scalars(select(WorkItem))} == {"done"}
        last = s.scalars(select(Run).order_by(Run.started_at.desc())).first()
        made_now = {c.request_hash for c in s.scalars(select(LLMCall).where(LLMCall.run_id == last.id))}
    # every call that had failed is made again, nothing answered before is asked again (cache hits);
    # the only other new calls judge answers that exist only now
    assert missing <= made_now and not made_now & ok_calls


def test_an_oversized_line_is_refused_with_file_line_and_size_before_anything_is_stored(tmp_path, fake_server):
    src = tmp_path / "big.jsonl"
    src.write_text(json.dumps({"prompt": "fine"}) + "\n" + json.dumps({"prompt": "x" * 2_000_000}) + "\n")
    db = tmp_path / "s.db"
    res = CliRunner().invoke(app, ["--db", str(db), "--base-url", fake_server.base_url, "generate", str(src)])
    assert res.exit_code == 2
    assert "big.jsonl:2: the record is 2,000,014 bytes, over the limit of 1,000,000 (setting max_input_bytes)" \
        in res.stderr
    assert not db.exists() and fake_server.requests == []
    many = tmp_path / "long.jsonl"
    many.write_text(json.dumps({"prompt": "word " * 2000}) + "\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text("max_input_tokens = 1000\n")
    res = CliRunner().invoke(app, ["--config", str(cfg), "--db", str(db), "--base-url", fake_server.base_url,
                                   "generate", str(many)])
    assert res.exit_code == 2 and "long.jsonl:1: the record holds about 2,500 tokens, over the limit of 1,000" \
        in res.stderr
    assert not db.exists() and fake_server.requests == []


def test_a_token_budget_stops_the_run_cleanly_and_the_same_command_resumes_it(tmp_path, fake_server):
    fake_server.responder = scripted(SCORES)
    src = write_jsonl(tmp_path / "q.jsonl", QUESTIONS[:12])
    db = str(tmp_path / "b.db")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[generate]\nitem_concurrency = 2\n")
    base = ["--config", str(cfg), "--db", db, "--base-url", fake_server.base_url]
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, [*base, "--max-total-tokens", "300", "generate", str(src),
                                                         "--n", "3"])
    assert res.exit_code == 3 and "is stopped" in res.stdout and "token budget spent" in res.stdout
    with Store(db).session() as s:
        run = s.scalars(select(Run)).one()
        assert run.status == "stopped" and "token budget spent" in run.error
        statuses = [w.status for w in s.scalars(select(WorkItem))]
        assert "claimed" not in statuses and 0 < statuses.count("done") < len(statuses)
    res = CliRunner().invoke(app, [*base, "generate", str(src), "--n", "3"])
    assert res.exit_code == 0, res.output
    with Store(db).session() as s:
        assert {w.status for w in s.scalars(select(WorkItem))} == {"done"}


def test_a_live_local_run_is_never_called_dead_and_a_silent_remote_one_is():
    import os
    from datetime import UTC, datetime, timedelta

    from graphs.common.workers import host, run_is_dead

    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    here = {"host": host(), "pid": os.getpid(), "lease_seconds": 30}
    assert run_is_dead({"worker": here, "heartbeat_at": old}) is None  # alive here, even if its loop stalled
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert "is gone" in run_is_dead({"worker": {**here, "pid": gone.pid}, "heartbeat_at": old})
    remote = {"host": "elsewhere", "pid": 1, "lease_seconds": 30}
    assert "no heartbeat" in run_is_dead({"worker": remote, "heartbeat_at": old})
    assert run_is_dead({"worker": remote, "heartbeat_at": datetime.now(UTC).isoformat()}) is None
