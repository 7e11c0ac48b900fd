"""Several replicas of one model behind a role (``--base-url A --base-url B`` or ``A,B``): requests go
to the replica with the fewest in flight, within each replica's capacity; a replica that keeps
failing is rested and tried again after its rest, with a growing rest; a request that fails on one
replica is answered by another; the command prints and stores requests, failures and latency per
replica. In-memory backends for the rules, real HTTP servers (the fake server) for the command."""

from __future__ import annotations

import asyncio
import json
import tomllib
import warnings
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agents.backends import BackendRequest, BackendResponse, OpenAICompatBackend
from agents.errors import LLMUnavailable, PermanentLLMError, TransientLLMError
from agents.limits import SlotPool
from agents.replicas import ReplicaBackend, ReplicaSettings, merge_replica_stats, safe_urls, split_urls
from carealign.cli import app
from store import Store
from store.models import Run, WorkItem
from tests.fake_server import FakeOpenAIServer
from tests.helpers import write_jsonl
from tests.test_generate import scripted

REQ = BackendRequest(model="m", messages=[{"role": "user", "content": "hi"}], params={})


class Memory:
    """An in-memory replica: answers after ``gate`` is set (or at once), or fails as told."""

    def __init__(self, name: str, fail: Exception | None = None, gate: asyncio.Event | None = None):
        self.base_url = f"http://{name}:8000/v1"
        self.fail, self.gate = fail, gate
        self.calls = 0
        self.in_flight = 0
        self.peak = 0
        self.checked = None

    async def complete(self, req: BackendRequest) -> BackendResponse:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail is not None:
                raise self.fail
            return BackendResponse(choices=[self.base_url])
        finally:
            self.in_flight -= 1

    async def check(self) -> None:
        if self.checked is not None:
            raise self.checked

    async def aclose(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_requests_go_to_the_replica_with_the_fewest_in_flight():
    gate = asyncio.Event()
    a, b = Memory("a", gate=gate), Memory("b", gate=gate)
    backend = ReplicaBackend([a, b])
    tasks = [asyncio.create_task(backend.complete(REQ)) for _ in range(6)]
    await asyncio.sleep(0.01)
    assert (a.in_flight, b.in_flight) == (3, 3)
    gate.set()
    await asyncio.gather(*tasks)
    assert [r["requests"] for r in backend.stats()] == [3, 3]


async def test_each_replica_keeps_within_its_capacity_and_the_rest_wait():
    gate = asyncio.Event()
    a, b = Memory("a", gate=gate), Memory("b", gate=gate)
    backend = ReplicaBackend([a, b], ReplicaSettings(capacity=2))
    tasks = [asyncio.create_task(backend.complete(REQ)) for _ in range(7)]
    await asyncio.sleep(0.01)
    assert (a.in_flight, b.in_flight) == (2, 2)  # three requests wait for a free slot
    gate.set()
    await asyncio.gather(*tasks)
    assert (a.peak, b.peak) == (2, 2)
    assert a.calls + b.calls == 7


async def test_a_failed_request_is_answered_by_another_replica_at_once():
    a, b = Memory("a", fail=TransientLLMError("HTTP 503: down")), Memory("b")
    backend = ReplicaBackend([a, b])
    resp = await backend.complete(REQ)  # the first choice (a, equal load) fails; b answers
    assert resp.choices == [b.base_url]
    rows = {r["url"]: r for r in backend.stats()}
    assert rows["http://a:8000/v1"]["failures"] == 1 and rows["http://b:8000/v1"]["ok"] == 1


async def test_a_permanent_error_is_not_sent_to_another_replica():
    a, b = Memory("a", fail=PermanentLLMError("HTTP 400: bad request")), Memory("b", fail=PermanentLLMError("x"))
    backend = ReplicaBackend([a, b])
    with pytest.raises(PermanentLLMError):
        await backend.complete(REQ)
    assert a.calls + b.calls == 1


async def test_a_failing_replica_is_rested_then_tried_again_with_a_longer_rest():
    clock = Clock()
    a, b = Memory("a", fail=TransientLLMError("timeout")), Memory("b")
    backend = ReplicaBackend([a, b], ReplicaSettings(failures_to_rest=3, rest_seconds=10, rest_max_seconds=25),
                             clock=clock)
    for _ in range(3):  # ties go to the replica that served fewest: a is tried, fails over to b
        await backend.complete(REQ)
    assert a.calls == 3
    state = {r["url"]: r for r in backend.stats()}["http://a:8000/v1"]
    assert state["rests"] == 1 and state["state"].startswith("resting")
    for _ in range(5):  # resting: nothing goes to a
        await backend.complete(REQ)
    assert a.calls == 3
    clock.now += 10.5  # its rest is over: one request tries it, fails, and it rests twice as long
    await backend.complete(REQ)
    assert a.calls == 4
    assert backend.replicas[0].rest_until == pytest.approx(clock.now + 20)
    clock.now += 20.5
    await backend.complete(REQ)
    assert a.calls == 5 and backend.replicas[0].rest_until == pytest.approx(clock.now + 25)  # capped
    a.fail = None  # it came back: the next try after its rest succeeds and ends the back-off
    clock.now += 25.5
    await backend.complete(REQ)
    assert a.calls == 6 and backend.replicas[0].next_rest == 10
    assert backend.stats()[0]["state"] == "ok"


async def test_with_every_replica_down_the_error_reaches_the_engine_which_retries():
    a, b = Memory("a", fail=TransientLLMError("HTTP 500")), Memory("b", fail=TransientLLMError("HTTP 502"))
    backend = ReplicaBackend([a, b])
    with pytest.raises(TransientLLMError):
        await backend.complete(REQ)
    assert (a.calls, b.calls) == (1, 1)


async def test_check_rests_a_replica_that_does_not_answer_and_fails_when_none_does():
    a, b = Memory("a"), Memory("b")
    b.checked = LLMUnavailable("cannot reach the model server at http://b:8000/v1")
    backend = ReplicaBackend([a, b])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await backend.check()
    assert any("http://b:8000/v1" in str(w.message) for w in caught)
    assert backend.stats()[1]["state"].startswith("resting")
    a.checked = LLMUnavailable("cannot reach a")
    with pytest.raises(LLMUnavailable):
        await ReplicaBackend([a, b]).check()


async def test_slot_pool_waits_for_a_chosen_server():
    pool = SlotPool([1, None])
    first = await pool.acquire(lambda room: 0 if 0 in room else None)
    waiter = asyncio.create_task(pool.acquire(lambda room: 0 if 0 in room else None))
    await asyncio.sleep(0.01)
    assert not waiter.done() and first == 0
    await pool.release(0)
    assert await asyncio.wait_for(waiter, 1) == 0


def test_urls_split_and_lose_their_credentials_one_by_one():
    assert split_urls(["http://a/v1,http://b/v1", " http://c/v1 "]) == ["http://a/v1", "http://b/v1", "http://c/v1"]
    assert safe_urls("http://u:secret@a:1/v1?key=x,https://k:pw@b/v1") == "http://a:1/v1,https://b/v1"


def test_stats_of_several_workers_add_up_by_replica():
    one = [{"url": "A", "requests": 3, "ok": 2, "failures": 1, "rests": 0, "latency_ms_mean": 10.0,
            "latency_ms_max": 20.0, "state": "ok", "last_error": "x"}]
    two = [{"url": "A", "requests": 1, "ok": 1, "failures": 0, "rests": 1, "latency_ms_mean": 40.0,
            "latency_ms_max": 40.0, "state": "resting 3 s", "last_error": None}]
    (row,) = merge_replica_stats([one, two])
    assert (row["requests"], row["ok"], row["failures"], row["rests"]) == (4, 3, 1, 1)
    assert row["latency_ms_mean"] == 17.5 and row["latency_ms_max"] == 40.0 and row["state"] == "resting 3 s"


async def test_replicas_over_http_spread_the_load():
    with FakeOpenAIServer(latency=0.02) as s1, FakeOpenAIServer(latency=0.02) as s2:
        backend = ReplicaBackend([OpenAICompatBackend(s1.base_url), OpenAICompatBackend(s2.base_url)])
        try:
            await backend.check()
            await asyncio.gather(*(backend.complete(REQ) for _ in range(40)))
        finally:
            await backend.aclose()
        assert len(s1.requests) == len(s2.requests) == 20


QUESTIONS = [{"prompt": f"Question {i}: how often should blood pressure {i} be checked?"} for i in range(40)]


def test_a_replica_failing_for_good_after_50_requests_leaves_the_run_to_the_other(tmp_path: Path):
    """Two replicas, one answering HTTP 500 to everything after its 50th request: the run completes
    on the other; the per-replica table shows both; the broken one was tried again after its rests."""
    src = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[replicas]\nfailures_to_rest = 2\nrest_seconds = 0.05\nrest_max_seconds = 0.1\n")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    with FakeOpenAIServer(latency=0.01) as good, FakeOpenAIServer(latency=0.01) as bad:
        good.responder = bad.responder = scripted({0: 9, 1: 2})
        bad.fail_after = 50
        res = CliRunner(env={"COLUMNS": "220"}).invoke(app, [
            "--config", str(cfg), "--db", db, "--base-url", good.base_url, "--base-url", bad.base_url,
            "--concurrency", "4", "generate", str(src), "--n", "2"])
        assert res.exit_code == 0, res.output
        served_bad = len(bad.requests)
    assert "replicas" in res.output and good.base_url in res.output and bad.base_url in res.output
    store = Store(db)
    try:
        with store.session() as s:
            run = s.scalars(select(Run).where(Run.kind == "generate")).one()
            statuses = [w.status for w in s.scalars(select(WorkItem))]
    finally:
        store.dispose()
    assert run.status == "completed" and statuses == ["done"] * len(QUESTIONS)
    rows = {r["url"]: r for r in run.stats["replicas"]["generator"] + run.stats["replicas"]["judge"]}
    assert set(rows) == {good.base_url, bad.base_url}
    generator = {r["url"]: r for r in run.stats["replicas"]["generator"]}
    judge = {r["url"]: r for r in run.stats["replicas"]["judge"]}
    broken = [generator[bad.base_url], judge[bad.base_url]]
    assert sum(r["ok"] for r in broken) == 50  # it answered its first 50 requests, nothing after
    assert sum(r["requests"] for r in broken) == served_bad > 50 + 2  # and was tried again after resting
    assert sum(r["rests"] for r in broken) >= 2
    assert sum(r["failures"] for r in broken) == served_bad - 50
    assert json.loads(json.dumps(run.config))["base_url"] == f"{good.base_url},{bad.base_url}"


def test_settings_take_replicas_from_a_comma_list_in_the_config_file(tmp_path: Path):
    from carealign.settings import load_settings

    cfg = tmp_path / "c.toml"
    cfg.write_text('base_url = "http://a:1/v1,http://b:2/v1"\n[replicas]\ncapacity = 8\n')
    settings = load_settings(cfg)
    assert split_urls(settings.base_url) == ["http://a:1/v1", "http://b:2/v1"]
    assert settings.replicas.capacity == 8 and tomllib.loads(cfg.read_text())["replicas"]["capacity"] == 8


def test_a_commands_own_judge_base_url_can_be_repeated(tmp_path: Path):
    """``generate --judge-base-url A --judge-base-url B`` (the command's option, after the command
    name) spreads the judge's requests over both replicas, as the global option does."""
    src = write_jsonl(tmp_path / "q.jsonl", QUESTIONS[:12])
    db = f"sqlite:///{tmp_path / 'j.db'}"
    with FakeOpenAIServer() as gen, FakeOpenAIServer(latency=0.02) as j1, FakeOpenAIServer(latency=0.02) as j2:
        gen.responder = j1.responder = j2.responder = scripted({0: 9, 1: 2})
        res = CliRunner(env={"COLUMNS": "220"}).invoke(app, [
            "--db", db, "--base-url", gen.base_url, "--concurrency", "4", "generate", str(src), "--n", "2",
            "--judge-model", "judge-model", "--judge-base-url", j1.base_url, "--judge-base-url", j2.base_url])
        assert res.exit_code == 0, res.output
        judged = (len(j1.requests), len(j2.requests))
    assert min(judged) > 0 and sum(judged) == 12 * 2  # one judge call per distinct candidate, on both
    store = Store(db)
    try:
        with store.session() as s:
            run = s.scalars(select(Run).where(Run.kind == "generate")).one()
    finally:
        store.dispose()
    assert run.status == "completed" and run.config["judge_base_url"] == f"{j1.base_url},{j2.base_url}"
