"""The generate workflow end to end against the fake OpenAI server: exact pairs, filters,
failures, retries, traceability, and resuming after the process is killed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from agents.engine import LLMEngine
from agents.limits import Limiter
from agents.roles import load_rubric
from benchmarks.datasets.instructions import read_instructions
from graphs.generate.configuration import GenerateConfig
from graphs.generate.graph import build_graph, run_generate
from graphs.generate.nodes import GenerateDeps
from store.models import Candidate, Item, Judgment, LLMCall, PreferencePair, Run, WorkItem
from tests.fake_server import FakeOpenAIServer, Reply
from tests.helpers import write_jsonl

CRITERIA = ["accuracy", "safety", "helpfulness", "clarity"]
ROOT = Path(__file__).resolve().parent.parent


def is_judge(body: dict) -> bool:
    return "grader" in body["messages"][0]["content"]


def scripted(scores_by_seed: dict[int, int], answer=lambda body: None):
    """Generator answers name their seed; the judge scores an answer by the seed it names."""

    def responder(body: dict) -> str:
        if is_judge(body):
            prompt = body["messages"][-1]["content"]
            seed = int(prompt.split("answer seed=")[1].split(" ")[0])
            s = scores_by_seed[seed]
            return json.dumps({c: {"score": s, "reason": f"seed {seed}"} for c in CRITERIA})
        custom = answer(body)
        return custom if custom is not None else f"answer seed={body['seed']} for {body['messages'][-1]['content']}"

    return responder


def write_inputs(tmp_path: Path, lines: list[dict]) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", lines)


_MAKE_ENGINE: list = []


@pytest.fixture(autouse=True)
def _engines(make_engine):
    """make_deps() is called from tests that take no fixture for it: hand it the engine factory."""
    _MAKE_ENGINE.append(make_engine)
    yield
    _MAKE_ENGINE.pop()


def make_deps(store, server: FakeOpenAIServer, n: int = 3, min_margin: float = 1.0) -> GenerateDeps:
    limiter = Limiter(8)

    def engine(temperature: float) -> LLMEngine:
        return _MAKE_ENGINE[-1](server, store, temperature=temperature, max_tokens=64, timeout=5, max_retries=1,
                                backoff_max=0.02, limiter=limiter)

    config = GenerateConfig(n_candidates=n, min_margin=min_margin)
    return GenerateDeps(store, engine(0.7), engine(0.0), load_rubric(), config, seed=0)


async def run(deps: GenerateDeps, path: Path, **kw):
    return await run_generate(deps, read_instructions(path), "test", {"test": True}, **kw)


QUESTIONS = [{"prompt": "What is a normal resting heart rate?", "lang": "en"},
             {"messages": [{"role": "user", "content": "I have a fever."},
                           {"role": "assistant", "content": "How high?"},
                           {"role": "user", "content": "39 C. Should I see a doctor?"}]}]


async def test_best_and_worst_candidates_become_the_pair(store, fake_server, tmp_path):
    fake_server.responder = scripted({0: 9, 1: 2, 2: 5})
    report = await run(make_deps(store, fake_server), write_inputs(tmp_path, QUESTIONS))
    assert report.new_pairs == 2 and report.summary.failed == 0
    with store.session() as s:
        pairs = s.scalars(select(PreferencePair).order_by(PreferencePair.item_id)).all()
        assert len(pairs) == 2
        for pair in pairs:
            assert pair.chosen.startswith("answer seed=0 ")
            assert pair.rejected.startswith("answer seed=1 ")
            assert pair.margin == pytest.approx(7.0)
            assert pair.margins == {c: 7.0 for c in CRITERIA}
            assert pair.kind == "generic" and pair.run_id == report.run_id
        assert pairs[0].prompt == [{"role": "user", "content": QUESTIONS[0]["prompt"]}]
        assert pairs[0].language == "en"
        assert pairs[1].prompt == QUESTIONS[1]["messages"]
        # 3 answers + 3 judgments per item, nothing more
        assert s.scalar(select(func.count()).select_from(Candidate)) == 6
        assert s.scalar(select(func.count()).select_from(Judgment)) == 6 * len(CRITERIA)
    assert len(fake_server.requests) == 12
    assert sum(is_judge(b) for b in fake_server.requests) == 6


async def test_every_pair_traces_to_run_config_prompt_model_and_input(store, fake_server, tmp_path):
    fake_server.responder = scripted({0: 9, 1: 2, 2: 5})
    await run(make_deps(store, fake_server), write_inputs(tmp_path, QUESTIONS[:1]))
    with store.session() as s:
        pair = s.scalars(select(PreferencePair)).one()
        chosen = s.get(Candidate, pair.chosen_candidate_id)
        call = s.get(LLMCall, chosen.llm_call_id)
        assert call.id in pair.provenance["llm_call_ids"]
        assert call.model == "fake-model" and call.role == "generator" and call.prompt_name == "answer"
        assert call.prompt_hash and call.choices[0] == pair.chosen
        assert call.item_id == pair.item_id == chosen.item_id
        item = s.get(Item, pair.item_id)
        assert item.payload["prompt"] == QUESTIONS[0]["prompt"] and item.source == "in.jsonl:1"
        run_row = s.get(Run, call.run_id)
        assert run_row.config == {"test": True} and run_row.code_version and run_row.status == "completed"
        judgments = [s.get(Judgment, j) for j in pair.provenance["judgment_ids"]]
        assert {j.criterion for j in judgments} == set(CRITERIA)
        assert {s.get(LLMCall, j.llm_call_id).role for j in judgments} == {"judge"}


async def test_identical_answers_are_judged_once_and_never_paired(store, fake_server, tmp_path):
    fake_server.responder = scripted({0: 9}, answer=lambda body: "Rest and drink   fluids.")
    report = await run(make_deps(store, fake_server), write_inputs(tmp_path, QUESTIONS[:1]))
    assert report.new_pairs == 0
    assert report.summary.outcomes == {"no pair": 1}
    assert sum(is_judge(b) for b in fake_server.requests) == 0  # fewer than 2 distinct: nothing to judge


async def test_small_margin_gives_no_pair(store, fake_server, tmp_path):
    fake_server.responder = scripted({0: 6, 1: 6, 2: 6})
    report = await run(make_deps(store, fake_server, min_margin=0.5), write_inputs(tmp_path, QUESTIONS[:1]))
    assert report.new_pairs == 0 and report.summary.done == 1


async def test_failed_judging_is_recorded_and_a_rerun_retries_only_what_failed(store, fake_server, tmp_path):
    path = write_inputs(tmp_path, QUESTIONS[:1])
    good = scripted({0: 9, 1: 2, 2: 5})
    fake_server.responder = lambda b: "this is not json" if is_judge(b) else good(b)
    deps = make_deps(store, fake_server)
    report = await run(deps, path)
    # the answers are stored, the judgments are not: partial, with the judge's failures as reason
    assert report.summary.partial == 1 and report.summary.failed == 0 and report.new_pairs == 0
    with store.session() as s:
        work = s.scalars(select(WorkItem)).one()
        assert work.status == "partial" and "invalid structured reply" in work.error
        failed_calls = s.scalars(select(LLMCall).where(LLMCall.ok.is_(False))).all()
        assert len(failed_calls) == 3 and all("invalid JSON" in c.error for c in failed_calls)
        assert s.get(Run, report.run_id).status == "completed_with_failures"
    # the judge is fixed: a re-run retries the failed item; the answers come from the cache
    fake_server.responder = good
    before = len(fake_server.requests)
    report2 = await run(make_deps(store, fake_server), path)
    new_requests = fake_server.requests[before:]
    assert report2.new_pairs == 1 and report2.summary.failed == 0 and report2.summary.partial == 0
    assert all(is_judge(b) for b in new_requests) and len(new_requests) == 3
    assert report2.usage["generator"]["cache_hits"] == 3


async def test_rerun_of_finished_job_makes_no_calls_and_no_rows(store, fake_server, tmp_path):
    fake_server.responder = scripted({0: 9, 1: 2, 2: 5})
    path = write_inputs(tmp_path, QUESTIONS)
    await run(make_deps(store, fake_server), path)
    n_requests = len(fake_server.requests)
    with store.session() as s:
        counts = {m.__name__: s.scalar(select(func.count()).select_from(m))
                  for m in (Candidate, Judgment, PreferencePair, LLMCall, Item)}
    report = await run(make_deps(store, fake_server), path)
    assert len(fake_server.requests) == n_requests
    assert report.usage["generator"]["calls"] == 0 and report.usage["judge"]["calls"] == 0
    with store.session() as s:
        assert counts == {m.__name__: s.scalar(select(func.count()).select_from(m))
                          for m in (Candidate, Judgment, PreferencePair, LLMCall, Item)}


def test_graph_shows_the_whole_flow(sqlite_store, fake_server):
    graph = build_graph(make_deps(sqlite_store, fake_server))
    nodes = set(graph.get_graph().nodes)
    assert {"write_candidates", "judge_candidates", "select_pair"} <= nodes


def _counts(db: Path) -> tuple[int, int]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return (con.execute("select count(*) from preference_pairs").fetchone()[0],
                con.execute("select count(*) from work_items where status='done'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0, 0
    finally:
        con.close()


def test_killed_run_resumes_without_duplicates(tmp_path):
    """SIGKILL a `carealign generate` mid-run; the next run finishes the job and duplicates nothing."""
    items = [{"prompt": f"Question number {i} about blood pressure?"} for i in range(8)]
    path = write_inputs(tmp_path, items)
    db = tmp_path / "resume.db"
    with FakeOpenAIServer(latency=0.15) as server:
        server.responder = scripted({0: 9, 1: 2, 2: 5})
        cmd = [sys.executable, "-m", "carealign.cli", "--db", str(db), "--base-url", server.base_url,
               "generate", str(path), "--n", "3"]
        env = {**os.environ, "CAREALIGN_GENERATE__ITEM_CONCURRENCY": "2", "CAREALIGN_CONCURRENCY": "4",
               "CAREALIGN_GENERATE__LEASE_SECONDS": "1"}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _counts(db)[0] < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        pairs_at_kill, done_at_kill = _counts(db)
        assert 2 <= pairs_at_kill < len(items), "the kill should land mid-run"
        requests_first = len(server.requests)
        # a dead worker's claims are taken over once their lease has expired
        time.sleep(1.2)
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert _counts(db) == (len(items), len(items))
        second = server.requests[requests_first:]
        # finished items were not redone: at most the unfinished ones' calls were made again
        assert len(second) <= (len(items) - done_at_kill) * 6
    import sqlite3

    con = sqlite3.connect(db)
    dup = con.execute("select count(*) from (select item_id, llm_call_id, choice_index, count(*) c "
                      "from candidates group by 1, 2, 3 having c > 1)").fetchone()[0]
    per_item = con.execute(
        "select max(c) from (select item_id, count(*) c from preference_pairs group by 1)").fetchone()
    con.close()
    assert dup == 0 and per_item[0] == 1


async def test_per_criterion_expected_scores_break_ties_and_are_recorded(store, fake_server, tmp_path):
    """Every answer gets the written score 5, but the judge leaned differently: expected scores
    (from top_logprobs) separate them, and each judgment says how its score was made."""
    leaning = {0: {"5": 0.5, "6": 0.5}, 1: {"5": 0.5, "4": 0.5}, 2: {"5": 1.0}}  # expected 5.5, 4.5, 5.0

    def responder(body):
        if not is_judge(body):
            return f"answer seed={body['seed']} for {body['messages'][-1]['content']}"
        assert body["logprobs"] is True and body["top_logprobs"] == 10
        assert "Criterion:" in body["messages"][-1]["content"]  # one criterion per call
        seed = int(body["messages"][-1]["content"].split("answer seed=")[1].split(" ")[0])
        alts = {k: math.log(v) for k, v in leaning[seed].items()}
        pieces = [['{"score": ', {}], ["5", alts], [', "reason": "ok"}', {}]]
        return {"content": "".join(p[0] for p in pieces), "logprobs": pieces}

    fake_server.responder = responder
    deps = make_deps(store, fake_server, min_margin=0.5)
    deps.config.judge_mode, deps.config.judge_scoring = "per_criterion", "expected"
    report = await run(deps, write_inputs(tmp_path, QUESTIONS[:1]))
    assert report.new_pairs == 1
    assert sum(is_judge(b) for b in fake_server.requests) == 3 * len(CRITERIA)
    with store.session() as s:
        pair = s.scalars(select(PreferencePair)).one()
        assert pair.chosen.startswith("answer seed=0 ") and pair.rejected.startswith("answer seed=1 ")
        assert pair.margin == pytest.approx(1.0)
        judgments = s.scalars(select(Judgment)).all()
        assert len(judgments) == 3 * len(CRITERIA)
        assert len({j.llm_call_id for j in judgments}) == 3 * len(CRITERIA)  # one call per criterion
        assert all(j.details["scoring"] == "expected" and j.details["sampled"] == 5 and
                   j.details["mode"] == "per_criterion" for j in judgments)
        assert sorted({round(j.score, 3) for j in judgments}) == [4.5, 5.0, 5.5]
        # the logprobs are stored with the call, so a cached re-run scores the same way
        call = s.get(LLMCall, judgments[0].llm_call_id)
        assert call.logprobs and call.params["top_logprobs"] == 10


def test_sigterm_marks_the_run_interrupted_and_hands_claims_back(tmp_path):
    import sqlite3

    path = write_inputs(tmp_path, [{"prompt": f"Question {i} about asthma inhalers?"} for i in range(6)])
    db = tmp_path / "term.db"
    with FakeOpenAIServer(latency=0.3) as server:
        server.responder = scripted({0: 9, 1: 2, 2: 5})
        proc = subprocess.Popen(
            [sys.executable, "-m", "carealign.cli", "--db", str(db), "--base-url", server.base_url,
             "generate", str(path), "--n", "3"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(server.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    assert "interrupted" in proc.stderr.read()
    con = sqlite3.connect(db)
    assert con.execute("select status from runs").fetchall() == [("interrupted",)]
    assert con.execute("select count(*) from work_items where status = 'claimed'").fetchone() == (0,)
    con.close()


async def test_failed_and_empty_answers_are_recorded_and_the_rest_still_pair(store, fake_server, tmp_path):
    """Seed 2's answer is empty: it is left out with its reason, seeds 0 and 1 still make the pair.
    When every answer fails, the item fails with the reasons of its failed calls."""
    good = scripted({0: 9, 1: 2})
    fake_server.responder = lambda b: "" if not is_judge(b) and b["seed"] == 2 else good(b)
    report = await run(make_deps(store, fake_server), write_inputs(tmp_path, QUESTIONS[:1]))
    assert report.new_pairs == 1 and report.summary.failed == 0
    fake_server.responder = lambda b: (_ for _ in ()).throw(RuntimeError("unused"))
    fake_server.script([Reply(status=500)] * 6)  # 3 answers x (1 try + 1 retry)
    report = await run(make_deps(store, fake_server), write_inputs(tmp_path, QUESTIONS[1:]))
    assert report.summary.failed == 1
    with store.session() as s:
        failed = s.scalars(select(WorkItem).where(WorkItem.status == "failed")).one()
        assert failed.error.count("generate[fake-model:") == 3 and "HTTP 500" in failed.error


async def test_an_item_with_a_failed_call_is_partial_and_a_rerun_makes_only_the_missing_calls(store, fake_server,
                                                                                            tmp_path):
    """Seed 1's answer fails (HTTP 500 on every try): the item is partial with the reason, and no pair
    is formed from the other two. A re-run makes exactly the failed call (the rest are cache hits)
    and then forms the pair from all three."""
    good = scripted({0: 9, 1: 2, 2: 5})
    broken = {"on": True}

    def responder(body: dict) -> str:
        if broken["on"] and not is_judge(body) and body["seed"] == 1:
            raise RuntimeError("injected server fault")
        return good(body)

    fake_server.responder = responder
    path = write_inputs(tmp_path, QUESTIONS[:1])
    first = await run(make_deps(store, fake_server), path)
    assert first.new_pairs == 0 and first.status == "completed_with_failures"
    assert (first.summary.partial, first.summary.done, first.summary.failed) == (1, 0, 0)
    assert first.summary.outcomes == {"partial": 1}
    (reason, group), = first.summary.top_failures()
    assert "generate[fake-model:1]" in group.example and "HTTP 500" in group.example and group.count == 1
    with store.session() as s:
        item = s.scalars(select(WorkItem)).one()
        assert item.status == "partial" and "HTTP 500" in item.error
    made = len(fake_server.requests)

    broken["on"] = False
    second = await run(make_deps(store, fake_server), path)
    assert second.status == "completed" and second.new_pairs == 1 and second.summary.done == 1
    new = fake_server.requests[made:]
    # the one missing answer, then all three judged (the two judged before are cache hits: no request)
    assert [b["seed"] for b in new if not is_judge(b)] == [1] and sum(is_judge(b) for b in new) == 1
    with store.session() as s:
        pair = s.scalars(select(PreferencePair)).one()
        assert pair.provenance["candidates"] == {"graded": 3, "asked": 3, "failed_calls": 0}


async def test_min_candidates_forms_the_pair_from_fewer_and_the_pair_says_so(store, fake_server, tmp_path):
    good = scripted({0: 9, 1: 2, 2: 5})

    def responder(body: dict) -> str:
        if not is_judge(body) and body["seed"] == 1:
            raise RuntimeError("injected server fault")
        return good(body)

    fake_server.responder = responder
    deps = make_deps(store, fake_server)
    deps.config.min_candidates = 2
    report = await run(deps, write_inputs(tmp_path, QUESTIONS[:1]))
    assert report.new_pairs == 1 and report.summary.done == 1 and report.status == "completed"
    with store.session() as s:
        pair = s.scalars(select(PreferencePair)).one()
        assert pair.provenance["candidates"] == {"graded": 2, "asked": 3, "failed_calls": 1}
