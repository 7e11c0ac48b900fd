"""`rubric-prefs` end to end on the fake OpenAI server with scripted grader verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from benchmarks.datasets.instructions import read_rubric_instructions
from graphs.rubric_prefs.configuration import RubricPrefsConfig
from graphs.rubric_prefs.graph import run_rubric_prefs
from graphs.rubric_prefs.nodes import RubricPrefsDeps
from store.models import CandidateScore, Judgment, LLMCall, PreferencePair, Run
from tests.helpers import write_jsonl

HB_RUBRIC = [
    {"criterion": "States that adults may take at most 4 g of paracetamol a day.", "points": 6,
     "tags": ["axis:accuracy", "level:example"]},
    {"criterion": "Says to see a doctor if the fever lasts more than three days.", "points": 4,
     "tags": ["axis:completeness", "level:example"]},
    {"criterion": "Recommends taking more than 4 g a day.", "points": -10, "tags": ["axis:accuracy"]},
]
# what each answer (by its seed) does, criterion by criterion: seed 0 is thorough but unsafe
MEETS = {
    0: {"4 g": True, "doctor": True, "more than 4 g": True},
    1: {"4 g": True, "doctor": False, "more than 4 g": False},
    2: {"4 g": False, "doctor": False, "more than 4 g": False},
}


def criterion_key(prompt: str) -> str:
    line = next(x for x in prompt.splitlines() if x.startswith("Rubric criterion:"))
    return "more than 4 g" if "more than 4 g" in line else ("doctor" if "doctor" in line else "4 g")


def responder(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if "Rubric criterion:" not in prompt:
        return f"Answer with seed={body['seed']}: about paracetamol dosing and when to see a doctor."
    seed = int(prompt.split("Answer with seed=")[1].split(":")[0])
    return json.dumps({"explanation": "scripted", "criteria_met": MEETS[seed][criterion_key(prompt)]})


@pytest.fixture
def engine(make_engine, fake_server, store):
    """engine(temperature) on the fake server, recording to the test's store."""
    return lambda temperature: make_engine(fake_server, store, temperature=temperature, max_tokens=64, timeout=5,
                                           max_retries=1, backoff_max=0.02)


def write(tmp_path: Path, lines: list[dict]) -> Path:
    return write_jsonl(tmp_path / "rubric.jsonl", lines)


async def test_a_veto_overrides_a_higher_s1(store, fake_server, engine, tmp_path):
    fake_server.responder = responder
    src = write(tmp_path, [{"prompt": "How much paracetamol can I take for a fever?", "rubric": HB_RUBRIC,
                            "lang": "en"}])

    deps = RubricPrefsDeps(store, [engine(0.8)], engine(0.0),
                           RubricPrefsConfig(n_candidates=3, min_s1_margin=0.05),
                           dataset="test")
    report = await run_rubric_prefs(deps, read_rubric_instructions(src), {"test": True})
    assert report.new_pairs == 1 and report.summary.failed == 0
    # 3 answers, then 3 criteria x 3 answers graded one call each
    assert len(fake_server.requests) == 3 + 9
    with store.session() as s:
        pair = s.scalars(select(PreferencePair)).one()
        assert pair.kind == "rubric" and pair.language == "en"
        # seed 0 meets everything (S1 = 1.0) but violates the veto; seed 1 (S1 = 0.6) is chosen over it
        assert pair.chosen.startswith("Answer with seed=1") and pair.rejected.startswith("Answer with seed=0")
        assert pair.margins == pytest.approx({"s1": 0.6 - 1.0, "s2": 0.0, "s3": 1.0})
        assert pair.provenance["selection"] == "decided by veto"
        scores = {c.candidate_id: (c.s1, c.s2, c.s3) for c in s.scalars(select(CandidateScore))}
        assert sorted(scores.values()) == [(0.0, 0, 0), (pytest.approx(0.6), 0, 0), (pytest.approx(1.0), 0, 1)]
        judgments = [s.get(Judgment, j) for j in pair.provenance["judgment_ids"]]
        assert len(judgments) == 6 and {j.criterion_kind for j in judgments} == {"proficiency", "veto"}
        veto = next(j for j in judgments if j.criterion_kind == "veto" and j.met)
        assert veto.candidate_id == pair.rejected_candidate_id and veto.details["criterion_id"] == "hb2"
        assert s.get(LLMCall, veto.llm_call_id).role == "grader"


async def test_all_safe_candidates_are_ordered_by_s1_and_small_margins_are_dropped(store, fake_server, engine,
                                                                                     tmp_path):
    fake_server.responder = responder
    MEETS_SAFE = {0: {"4 g": True, "doctor": True, "more than 4 g": False}, 1: MEETS[1], 2: MEETS[2]}
    fake_server.responder = lambda body: (
        responder(body) if "Rubric criterion:" not in body["messages"][-1]["content"] else json.dumps(
            {"explanation": "s", "criteria_met": MEETS_SAFE[int(body["messages"][-1]["content"].split(
                "Answer with seed=")[1].split(":")[0])][criterion_key(body["messages"][-1]["content"])]}))
    src = write(tmp_path, [{"prompt": "Paracetamol dose?", "rubric": HB_RUBRIC}])

    deps = RubricPrefsDeps(store, [engine(0.8)], engine(0.0), RubricPrefsConfig(n_candidates=3), dataset="t")
    await run_rubric_prefs(deps, read_rubric_instructions(src), {})
    with store.session() as s:
        pair = s.scalars(select(PreferencePair)).one()
        assert pair.chosen.startswith("Answer with seed=0") and pair.rejected.startswith("Answer with seed=2")
        assert pair.margins["s1"] == pytest.approx(1.0) and pair.margin == pytest.approx(1.0)
    deps2 = RubricPrefsDeps(store, [engine(0.8)], engine(0.0),
                            RubricPrefsConfig(n_candidates=3, min_s1_margin=1.0),
                            dataset="t")
    report = await run_rubric_prefs(deps2, read_rubric_instructions(src), {})
    assert report.summary.outcomes == {"no pair": 1}  # a new job (other selection), all calls cached
    assert report.usage["grader"]["calls"] == 0 and report.usage["grader"]["cache_hits"] == 9


def test_cli_with_two_generators_a_separate_grader_and_a_report(tmp_path, fake_server):
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    fake_server.responder = responder
    src = write(tmp_path, [{"prompt": f"Paracetamol question {i}?", "rubric": HB_RUBRIC} for i in range(2)])
    db = str(tmp_path / "rp.db")
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, [
        "--db", db, "--base-url", fake_server.base_url, "rubric-prefs", str(src), "--n", "2",
        "--generator-model", "other-policy", "--judge-model", "grader-model"])
    assert res.exit_code == 0, res.output
    for line in ("pairs kept", "pairs dropped", "veto rate", "mean S1", "candidates graded (this job)"):
        assert line in res.stdout
    models = [b["model"] for b in fake_server.requests]
    # 2 items x 2 generator models x 2 samples answered; seeds 0 and 1 are then identical across models,
    # so exact duplicates are graded once: 2 items x 2 distinct answers x 3 criteria
    assert models.count("fake-model") == 4 and models.count("other-policy") == 4
    assert models.count("grader-model") == 12
    with Store(db).session() as s:
        run = s.scalars(select(Run)).one()
        assert run.config["resolved"]["generator_2"]["model"] == "other-policy"
        assert run.config["resolved"]["judge"]["model"] == "grader-model"
        assert s.scalar(select(func.count()).select_from(PreferencePair)) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "rubric": [{"criterion": "c", "points": -3, "tags": []}]}) + "\n")
    res = CliRunner().invoke(app, ["--db", db, "--base-url", fake_server.base_url, "rubric-prefs", str(bad)])
    assert res.exit_code == 2 and "bad.jsonl:1: invalid rubric" in res.stderr


def _cli(db: str, base_url: str, src: Path, *extra: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "carealign.cli", "--db", db, "--base-url", base_url, "rubric-prefs", str(src),
            "--n", "3", *extra]


def test_two_worker_processes_share_one_postgresql_job_without_doing_an_item_twice(pg_url, tmp_path):
    import subprocess

    from sqlalchemy import create_engine, text

    from tests.fake_server import FakeOpenAIServer

    root = Path(__file__).resolve().parent.parent
    items = [{"prompt": f"Question {i}: paracetamol for a fever?", "rubric": HB_RUBRIC} for i in range(12)]
    src = write(tmp_path, items)
    with FakeOpenAIServer(latency=0.05) as server:
        server.responder = responder
        # both workers start on an empty database: migrations are serialised by an advisory lock
        env = {**__import__("os").environ, "CAREALIGN_RUBRIC_PREFS__ITEM_CONCURRENCY": "2"}
        procs = [subprocess.Popen(_cli(pg_url, server.base_url, src), cwd=root, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for p in procs:
            assert p.wait(timeout=180) == 0, p.stderr.read()
        answers = [b for b in server.requests if "Rubric criterion:" not in b["messages"][-1]["content"]]
    assert len(answers) == 12 * 3  # every item answered once, by one of the workers
    engine = create_engine(pg_url)
    with engine.connect() as c:
        by_worker = dict(c.execute(text("select claimed_by, count(*) from work_items group by 1")).all())
        assert sum(by_worker.values()) == 12 and len(by_worker) == 2  # both workers took part
        assert c.execute(text("select count(*) from work_items where status <> 'done'")).scalar() == 0
        assert c.execute(text("select count(*) from preference_pairs")).scalar() == 12
    engine.dispose()


def test_killed_rubric_prefs_run_resumes_to_the_same_pairs(tmp_path):
    import signal
    import sqlite3
    import subprocess
    import time

    from tests.fake_server import FakeOpenAIServer

    root = Path(__file__).resolve().parent.parent
    src = write(tmp_path, [{"prompt": f"Question {i}: paracetamol for a fever?", "rubric": HB_RUBRIC}
                           for i in range(6)])

    def pairs(db: Path) -> list[tuple]:
        con = sqlite3.connect(db)
        try:
            return con.execute("select item_id, chosen, rejected, margins from preference_pairs order by 1").fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()

    with FakeOpenAIServer(latency=0.1) as server:
        server.responder = responder
        env = {**__import__("os").environ, "CAREALIGN_RUBRIC_PREFS__ITEM_CONCURRENCY": "2",
               "CAREALIGN_RUBRIC_PREFS__LEASE_SECONDS": "1"}
        whole = tmp_path / "whole.db"
        assert subprocess.run(_cli(str(whole), server.base_url, src), cwd=root, env=env,
                              capture_output=True).returncode == 0
        killed = tmp_path / "killed.db"
        proc = subprocess.Popen(_cli(str(killed), server.base_url, src), cwd=root, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(pairs(killed)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 2 <= len(pairs(killed)) < 6
        time.sleep(1.2)  # the dead worker's lease runs out
        assert subprocess.run(_cli(str(killed), server.base_url, src), cwd=root, env=env,
                              capture_output=True).returncode == 0
    # same seeds, same cached-or-made calls: the resumed run ends with the uninterrupted run's pairs
    assert [p[1:] for p in pairs(killed)] == [p[1:] for p in pairs(whole)] and len(pairs(whole)) == 6


def test_a_second_grader_is_compared_but_never_decides(tmp_path, fake_server):
    from typer.testing import CliRunner

    from carealign.cli import app
    from store import Store

    def two_graders(body: dict) -> str:
        reply = responder(body)
        if body["model"] == "grader-b" and criterion_key(body["messages"][-1]["content"]) == "doctor":
            verdict = json.loads(reply)
            return json.dumps({**verdict, "criteria_met": not verdict["criteria_met"]})
        return reply

    fake_server.responder = two_graders
    src = write(tmp_path, [{"prompt": f"Paracetamol question {i}?", "rubric": HB_RUBRIC} for i in range(2)])
    db = str(tmp_path / "agree.db")
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, [
        "--db", db, "--base-url", fake_server.base_url, "rubric-prefs", str(src), "--n", "2",
        "--judge-model", "grader-a", "--second-grader-model", "grader-b"])
    assert res.exit_code == 0, res.output
    # 2 items x 2 answers x 3 criteria = 12 verdict pairs; grader-b disagrees on every 'doctor' one (4)
    assert "66.7% of 12 verdicts" in res.stdout
    with Store(db).session() as s:
        pairs = s.scalars(select(PreferencePair)).all()
        # the pairs follow grader-a alone: seed 1 (safe) over seed 0 (vetoed)
        assert len(pairs) == 2 and all(p.chosen.startswith("Answer with seed=1") for p in pairs)
        assert {j.judge_model for j in s.scalars(select(Judgment))} == {"grader-a", "grader-b"}


@pytest.mark.parametrize("rubric,expected", [
    ([{"criterion": "c", "tags": []}], "rubric.jsonl:1: invalid rubric: item 0: field 'points' must be an integer"),
    ([{"criterion": "c", "points": 50, "tags": []}], "item 0: field 'points' must be an integer from -10 to 10"),
    ([{"points": 5}], "item 0: field 'criterion' must be a non-empty string"),
    ("oops", "rubric.jsonl:1: field 'rubric': Input should be a valid list"),
    ({"criteria": [{"id": "a", "text": "t", "kind": "proficiency", "weight": 0.5}]}, "weights must sum to 1"),
])
def test_bad_rubrics_name_the_line_and_field(tmp_path, rubric, expected):
    from benchmarks.datasets.instructions import InputError

    src = write(tmp_path, [{"prompt": "x", "rubric": rubric}])
    with pytest.raises(InputError) as info:
        read_rubric_instructions(src)
    assert expected in str(info.value)
