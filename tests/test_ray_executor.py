"""``--executor ray --workers N``: N Ray actors run the claim loop of one run against one PostgreSQL
store. Real Ray (a local instance, 2 CPUs), real PostgreSQL, the fake server (deterministic replies,
so a run's export can be compared with a 1-worker local run). A missing Ray skips these tests,
except with CAREALIGN_REQUIRE_RAY=1 (CI), where it fails them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from carealign.cli import app
from store import Store
from store.models import Candidate, PreferencePair, Run, WorkItem
from tests.fake_server import FakeOpenAIServer
from tests.helpers import write_jsonl
from tests.test_generate import is_judge, scripted

ROOT = Path(__file__).resolve().parent.parent
SCORES = {0: 9, 1: 2}
# actors of a quarter CPU each: 4 of them fit the 2-CPU local instance
RAY_TOML = "[ray]\nnum_cpus = 0.25\npoll_seconds = 0.2\n[generate]\nlease_seconds = 6\n"


@pytest.fixture(scope="module")
def ray_module() -> Any:
    try:
        import ray
    except ImportError as exc:
        if os.environ.get("CAREALIGN_REQUIRE_RAY") == "1":
            pytest.fail(f"Ray is not installed ({exc}) and CAREALIGN_REQUIRE_RAY=1")
        pytest.skip(f"Ray is not installed: {exc}")
    return ray


@pytest.fixture(scope="module")
def ray_instance(ray_module) -> Any:
    ray_module.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray_module
    ray_module.shutdown()


def questions(n: int) -> list[dict[str, str]]:
    return [{"prompt": f"Question {i}: what should a patient with condition {i} ask the pharmacist?"} for i in range(n)]


def invoke(args: list[str]) -> Any:
    return CliRunner(env={"COLUMNS": "220"}).invoke(app, args)


def exported(db: str, out: Path) -> list[str]:
    res = invoke(["--db", db, "db", "export", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return sorted(out.read_text(encoding="utf-8").splitlines())


def stored(db: str) -> dict[str, Any]:
    store = Store(db)
    try:
        with store.session() as s:
            runs = list(s.scalars(select(Run).where(Run.kind == "generate")))
            work = Counter(w.status for w in s.scalars(select(WorkItem)))
            workers = set(s.scalars(select(WorkItem.claimed_by)))
            per_item = Counter(s.scalars(select(Candidate.item_id)))
            pairs = Counter(s.scalars(select(PreferencePair.item_id)))
            n_pairs = s.scalar(select(func.count()).select_from(PreferencePair))
    finally:
        store.dispose()
    return {"runs": runs, "work": work, "workers": workers, "candidates_per_item": per_item,
            "pairs_per_item": pairs, "pairs": n_pairs}


def generator_requests(*servers: FakeOpenAIServer) -> Counter:
    """(prompt, seed) of every generator request the servers answered."""
    return Counter((b["messages"][-1]["content"], b.get("seed"))
                   for s in servers for b in s.requests if not is_judge(b))


@pytest.mark.ray
def test_four_ray_workers_do_400_items_exactly_once_and_export_what_one_local_worker_does(
        ray_instance, pg_url, tmp_path):
    items = questions(400)
    src = write_jsonl(tmp_path / "q.jsonl", items)
    cfg = tmp_path / "ray.toml"
    cfg.write_text(RAY_TOML)
    with FakeOpenAIServer() as one, FakeOpenAIServer() as two:
        one.responder = two.responder = scripted(SCORES)
        res = invoke(["--config", str(cfg), "--db", pg_url, "--base-url", f"{one.base_url},{two.base_url}",
                      "--executor", "ray", "--workers", "4", "generate", str(src), "--n", "2"])
        assert res.exit_code == 0, res.output
        ray_requests = generator_requests(one, two)
        total_requests = len(one.requests) + len(two.requests)
    got = stored(pg_url)
    (run,) = got["runs"]
    assert run.status == "completed" and run.stats["done"] == 400
    assert got["work"] == {"done": 400}
    assert set(got["candidates_per_item"].values()) == {2} and len(got["candidates_per_item"]) == 400
    assert set(got["pairs_per_item"].values()) == {1} and got["pairs"] == 400
    assert len(ray_requests) == 800 and set(ray_requests.values()) == {1}  # no item was generated twice
    assert len(got["workers"]) >= 2  # the items were shared
    # the workers' usage is the run's, and the replica table adds up the four workers' requests
    assert run.stats["usage"]["generator"]["calls"] == 800 and run.stats["usage"]["judge"]["calls"] == 800
    replicas = run.stats["replicas"]
    assert sum(r["requests"] for role in replicas.values() for r in role) == total_requests == 1600
    assert {r["url"] for r in replicas["generator"]} == {one.base_url, two.base_url}
    assert "generator: replicas" in res.output

    local_db = f"sqlite:///{tmp_path / 'local.db'}"
    with FakeOpenAIServer() as server:
        server.responder = scripted(SCORES)
        res = invoke(["--db", local_db, "--base-url", server.base_url, "generate", str(src), "--n", "2"])
        assert res.exit_code == 0, res.output
    assert exported(pg_url, tmp_path / "ray.jsonl") == exported(local_db, tmp_path / "local.jsonl")


@pytest.mark.ray
def test_a_command_of_several_jobs_runs_each_on_the_workers_as_a_local_run_does(ray_instance, pg_url, tmp_path):
    """`factcheck run` with three methods is three jobs: each runs on the Ray workers in turn (a worker
    passes over the jobs before its own), and the report equals a local run's."""
    from tests.test_factcheck import TEXTS, checker

    data = write_jsonl(tmp_path / "facts.jsonl", TEXTS)
    cfg = tmp_path / "ray.toml"
    cfg.write_text(RAY_TOML)
    reports = {}
    for name, db, extra in (("ray", pg_url, ["--executor", "ray", "--workers", "2"]),
                            ("local", f"sqlite:///{tmp_path / 'local.db'}", [])):
        with FakeOpenAIServer() as server:
            server.responder = checker
            res = invoke(["--config", str(cfg), "--db", db, "--base-url", server.base_url, *extra, "factcheck",
                          "run", str(data), "--methods", "zero-shot,cot,sc@3", "--out-dir", str(tmp_path / name)])
            assert res.exit_code == 0, res.output
            reports[name] = ((tmp_path / name / "factcheck_report.md").read_text(), len(server.requests))
    assert reports["ray"] == reports["local"]
    assert reports["ray"][1] >= len(TEXTS) * 3  # each text checked by every method (no request made twice)
    store = Store(pg_url)
    try:
        with store.session() as s:
            runs = list(s.scalars(select(Run).where(Run.kind == "factcheck")))
    finally:
        store.dispose()
    assert len(runs) == 3 and {r.status for r in runs} == {"completed"}


def running_run_id(db: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    store = Store(db)
    try:
        while time.monotonic() < deadline:
            try:
                with store.session() as s:
                    run_id = s.scalar(select(Run.id).where(Run.kind == "generate", Run.status == "running"))
            except Exception:  # noqa: BLE001 - the schema is being created
                run_id = None
            if run_id:
                return run_id
            time.sleep(0.1)
    finally:
        store.dispose()
    raise AssertionError("no generate run started")


@pytest.mark.ray
def test_an_actor_killed_mid_run_is_restarted_and_nothing_is_lost_or_duplicated(ray_instance, pg_url, tmp_path):
    items = questions(120)
    src = write_jsonl(tmp_path / "q.jsonl", items)
    cfg = tmp_path / "ray.toml"
    cfg.write_text(RAY_TOML)
    result: dict[str, Any] = {}
    # slow enough replies that the run outlasts the actor's restart (a few seconds): at 20 ms the
    # other actor could finish every item first, and the restarted one would have nothing to take
    with FakeOpenAIServer(latency=0.25) as server:
        server.responder = scripted(SCORES)
        args = ["--config", str(cfg), "--db", pg_url, "--base-url", server.base_url, "--concurrency", "4",
                "--executor", "ray", "--workers", "2", "generate", str(src), "--n", "2"]
        driver = threading.Thread(target=lambda: result.setdefault("res", invoke(args)))
        driver.start()
        run_id = running_run_id(pg_url)
        deadline = time.monotonic() + 120
        victim, seen = None, {}
        while time.monotonic() < deadline:  # until the actor has finished a few items (of 120)
            try:
                victim = victim or ray_instance.get_actor(f"carealign-{run_id[:8]}-0")
                seen = ray_instance.get(victim.stats.remote(), timeout=5)
            except ValueError:  # not created yet
                pass
            if seen.get("summary") is not None and seen["summary"].done >= 5:
                break
            time.sleep(0.1)
        ray_instance.kill(victim, no_restart=False)  # Ray restarts it; its claims are taken over
        killed_at = len(server.requests)
        driver.join(timeout=240)
        assert not driver.is_alive()
    res = result["res"]
    assert res.exit_code == 0, res.output
    assert killed_at < 400  # it was killed mid-run
    got = stored(pg_url)
    # the killed process finished some items, its restarted self and the other actor the rest
    assert seen["worker"] in got["workers"] and len(got["workers"]) == 3
    (run,) = got["runs"]
    assert run.status == "completed" and got["work"] == {"done": 120} and run.stats["done"] == 120
    assert set(got["candidates_per_item"].values()) == {2} and len(got["candidates_per_item"]) == 120
    assert set(got["pairs_per_item"].values()) == {1} and got["pairs"] == 120


@pytest.mark.ray
def test_ctrl_c_stops_every_actor_and_hands_their_claims_back(ray_module, pg_url, tmp_path):
    """Ctrl-C at the terminal (SIGINT to the command's process group, Ray's processes included):
    exit 130, the run interrupted, no item left claimed; the same job then finishes (here by the local
    executor: the executor is no part of the job)."""
    src = write_jsonl(tmp_path / "q.jsonl", questions(80))
    cfg = tmp_path / "ray.toml"
    cfg.write_text(RAY_TOML)
    with FakeOpenAIServer(latency=0.03) as server:
        server.responder = scripted(SCORES)
        args = [sys.executable, "-m", "carealign.cli", "--config", str(cfg), "--db", pg_url, "--base-url",
                server.base_url, "--concurrency", "4", "generate", str(src), "--n", "2"]
        proc = subprocess.Popen([*args[:-4], "--executor", "ray", "--workers", "2", *args[-4:]], cwd=ROOT,
                                start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while len(server.requests) < 60 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, out
        got = stored(pg_url)
        assert [r.status for r in got["runs"]] == ["interrupted"]
        assert set(got["work"]) <= {"pending", "done"} and got["work"]["pending"] > 0  # nothing left claimed
        again = subprocess.run(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=240)
        assert again.returncode == 0, again.stdout
    assert stored(pg_url)["work"] == {"done": 80}


@pytest.mark.ray
def test_a_token_budget_counts_every_worker_and_stops_them_all_cleanly(ray_instance, pg_url, tmp_path):
    src = write_jsonl(tmp_path / "q.jsonl", questions(40))
    cfg = tmp_path / "ray.toml"
    cfg.write_text(RAY_TOML)
    budget = 4000  # about 35 requests of the 160 the input needs
    with FakeOpenAIServer(latency=0.2) as server:
        server.responder = scripted(SCORES)
        res = invoke(["--config", str(cfg), "--db", pg_url, "--base-url", server.base_url, "--concurrency", "2",
                      "--max-total-tokens", str(budget), "--executor", "ray", "--workers", "2", "generate",
                      str(src), "--n", "2"])
    assert res.exit_code == 3 and "is stopped" in res.output, res.output
    got = stored(pg_url)
    (run,) = got["runs"]
    assert run.status == "stopped" and "token budget spent" in run.error
    assert "claimed" not in got["work"] and 0 < got["work"]["done"] < 40 and got["work"]["pending"] > 0
    used = sum(u["prompt_tokens"] + u["completion_tokens"] for u in run.stats["usage"].values())
    # the run's usage is every worker's, and all stopped once together they had spent it (each on its
    # own would have gone on to the whole budget: twice as much)
    assert budget <= used < 2 * budget


def test_ray_on_sqlite_is_refused_before_anything_is_written(tmp_path):
    src = write_jsonl(tmp_path / "q.jsonl", questions(3))
    db = tmp_path / "store.db"
    res = invoke(["--db", str(db), "--base-url", "http://127.0.0.1:9/v1", "--executor", "ray", "--workers", "2",
                  "generate", str(src)])
    assert res.exit_code == 2
    assert "--executor ray needs a PostgreSQL store" in res.output and "nothing was written" in res.output
    assert not db.exists() and list(tmp_path.iterdir()) == [src]


def test_workers_without_the_ray_executor_are_refused(tmp_path):
    src = write_jsonl(tmp_path / "q.jsonl", questions(3))
    res = invoke(["--db", str(tmp_path / "s.db"), "--base-url", "http://127.0.0.1:9/v1", "--workers", "3",
                  "generate", str(src)])
    assert res.exit_code == 2 and "--workers 3 needs --executor ray" in res.output
    assert not (tmp_path / "s.db").exists()


def test_the_local_executor_does_not_import_ray():
    code = ("import sys; from carealign.cli import app; from carealign.settings import load_settings; "
            "from graphs.common.runner import run_workflow; load_settings(); "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
