"""Fact-checking methods end to end on the fake OpenAI server, with scripted checkers whose
verdicts make every metric known in advance."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from benchmarks.datasets.factcheck import load_dataset
from benchmarks.factcheck_report import method_result
from graphs.factcheck.configuration import FactcheckConfig
from graphs.factcheck.graph import records_of, run_factcheck
from graphs.factcheck.methods import compute_matched, parse_method, parse_methods
from graphs.factcheck.nodes import FactcheckDeps, majority
from store.models import CheckAnswer, LLMCall
from tests.helpers import write_jsonl

# four texts: A and B hold an error (sentence 1 and 0), C and D are correct
TEXTS = [
    {"id": "A", "label": "error", "error_sentence_id": 1, "error_type": "dosage", "difficulty": "Easy",
     "text": "Case A concerns fever. Paracetamol may be taken at 10 g a day.",
     "sentences": ["Case A concerns fever.", "Paracetamol may be taken at 10 g a day."]},
    {"id": "B", "label": "error", "error_sentence_id": 0, "error_type": "diagnosis", "difficulty": "Hard",
     "text": "Case B: a stiff neck means appendicitis. See a doctor.",
     "sentences": ["Case B: a stiff neck means appendicitis.", "See a doctor."]},
    {"id": "C", "label": "correct", "difficulty": "Easy",
     "text": "Case C concerns asthma. Inhaled steroids reduce attacks. Rinse the mouth after use.",
     "sentences": ["Case C concerns asthma.", "Inhaled steroids reduce attacks.", "Rinse the mouth after use."]},
    {"id": "D", "label": "correct", "difficulty": "Hard",
     "text": "Case D concerns diabetes. Metformin is a first-line drug.",
     "sentences": ["Case D concerns diabetes.", "Metformin is a first-line drug."]},
]
# (verdict, sentence) a single checker gives: A found, B missed, C over-criticised, D right
SINGLE = {"A": ("error", 1), "B": ("correct", None), "C": ("error", 2), "D": ("correct", None)}
# debate: round 0 per agent; in round 1 every agent follows the majority of round 0, except on D where
# all three are talked into flagging it (over-criticism grows with the exchange)
ROUND0 = {"A": [("error", 1), ("error", 1), ("correct", None)],
          "B": [("correct", None), ("error", 0), ("correct", None)],
          "C": [("correct", None), ("correct", None), ("error", 2)],
          "D": [("error", 0), ("correct", None), ("correct", None)]}
ROUND1 = {"A": ("error", 1), "B": ("correct", None), "C": ("correct", None), "D": ("error", 1)}


def case_of(prompt: str) -> str:
    return re.search(r"Case ([A-D])", prompt).group(1)


def reply(verdict: str, sentence: int | None, reasoning: str = "Checked every sentence.") -> str:
    return json.dumps({"reasoning": reasoning, "verdict": verdict, "error_sentence_id": sentence,
                       "error_span": None, "correction": "fixed" if verdict == "error" else None,
                       "confidence": 0.8})


def checker(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    case = case_of(prompt)
    if "The other checkers answered" in prompt:
        return reply(*ROUND1[case])
    if body.get("temperature", 0) > 0:  # a sampled agent: its seed says which one
        return reply(*ROUND0[case][body["seed"] % 1000 % 3])
    return reply(*SINGLE[case])


@pytest.fixture
def engine(make_engine, fake_server, store):
    """engine(model="checker-model"): a checker on the fake server, recording to the test's store."""
    return lambda model="checker-model": make_engine(fake_server, store, model=model, temperature=0.0,
                                                     max_tokens=256, timeout=5, max_retries=1, backoff_max=0.02)


def dataset(tmp_path: Path) -> list[dict]:
    return records_of(load_dataset(write_jsonl(tmp_path / "facts.jsonl", TEXTS)))


def test_method_specs_and_compute_matching():
    assert parse_method("debate@3x2").calls == 6 and parse_method("sc@6").calls == 6
    assert parse_method("debate@3x2+judge").calls == 7 and parse_method("roles@3+triage").calls == 5
    assert parse_method("budget@800").min_reasoning_chars == 800 and not parse_method("zero-shot").reasoned
    methods = parse_methods("zero-shot,cot,sc@6,debate@3x2,sc@3")
    assert [(a.name, b.name) for a, b in compute_matched(methods)] == [("debate@3x2", "sc@6")]
    for bad, msg in [("debate@1x2", "at least 2 agents"), ("mystery", "unknown fact-checking method"),
                     ("roles@9", "only 5 specialist roles"), ("cot,cot", "listed twice")]:
        with pytest.raises(ValueError, match=msg):
            parse_methods(bad)


def test_majority_vote_location_and_ties():
    answers = [{"id": 1, "agent": 0, "verdict": "error", "sentence_id": 2},
               {"id": 2, "agent": 1, "verdict": "error", "sentence_id": 1},
               {"id": 3, "agent": 2, "verdict": "error", "sentence_id": 1},
               {"id": 4, "agent": 3, "verdict": "correct", "sentence_id": None}]
    vote = majority(answers, "correct")
    assert (vote["verdict"], vote["sentence_id"], vote["answer_id"], vote["confidence"]) == ("error", 1, 2, 0.75)
    assert majority(answers[2:], "correct")["verdict"] == "correct"  # 1-1: the cautious call
    assert majority(answers[2:], "error")["verdict"] == "error"


async def test_single_checker_metrics_are_exact(store, fake_server, engine, tmp_path):
    fake_server.responder = checker
    deps = FactcheckDeps(store, engine(), parse_method("zero-shot"), FactcheckConfig(), dataset="facts")
    report = await run_factcheck(deps, dataset(tmp_path), {"method": "zero-shot"})
    assert report.summary.done == 4 and len(fake_server.requests) == 4
    assert "reasoning" not in json.dumps(fake_server.requests[0]["response_format"])  # zero-shot: verdict only
    r = method_result(store, deps.job_key, n_resamples=50)
    m = r.metrics
    # TP = A, FN = B, FP = C, TN = D
    assert (m.veracity.precision, m.veracity.recall, m.veracity.f1, m.fpr, m.accuracy) == (0.5, 0.5, 0.5, 0.5, 0.5)
    # A is flagged at its gold sentence: localisation TP = 1 of 2 flagged, of 2 erroneous
    assert (m.localisation.tp, m.localisation.precision, m.localisation.recall) == (1, 0.5, 0.5)
    assert r.calls == 4 and r.calls_per_text == 1.0 and r.tokens > 0
    assert r.breakdowns["difficulty"]["Hard"].fpr == 0.0 and r.breakdowns["difficulty"]["Easy"].fpr == 1.0
    again = await run_factcheck(deps, dataset(tmp_path), {"method": "zero-shot"})
    assert again.summary.done == 0 and len(fake_server.requests) == 4  # done items are not checked again


async def test_debate_stores_every_round_and_reports_over_criticism_by_round(store, fake_server, engine, tmp_path):
    fake_server.responder = checker
    deps = FactcheckDeps(store, engine(), parse_method("debate@3x2"), FactcheckConfig(), dataset="facts")
    await run_factcheck(deps, dataset(tmp_path), {"method": "debate@3x2"})
    assert len(fake_server.requests) == 4 * 3 * 2
    debate_prompts = [b for b in fake_server.requests if "The other checkers answered" in b["messages"][-1]["content"]]
    assert len(debate_prompts) == 12 and all(b["temperature"] == 0.7 for b in fake_server.requests)
    with store.session() as s:
        rows = s.scalars(select(CheckAnswer).where(CheckAnswer.job_key == deps.job_key)).all()
        assert len(rows) == 4 * (3 * 2 + 1)
        assert {(r.role, r.round) for r in rows} == {("agent", 0), ("debater", 1), ("final", 1)}
        assert all(s.get(LLMCall, r.llm_call_id).role in ("checker", "debater") for r in rows if r.role != "final")
    r = method_result(store, deps.job_key, n_resamples=50)
    # round 0 majority: A error, B correct, C correct, D correct -> FPR 0, recall 0.5
    # round 1: A error, B correct, C correct, D error -> FPR 0.5, recall 0.5
    assert [(x.fpr, x.recall) for x in r.rounds.per_round] == [(0.0, 0.5), (0.5, 0.5)]
    assert (r.rounds.flips[0].correct_to_error, r.rounds.flips[0].error_to_correct) == (1, 0)
    # agent 2 flips on A (correct->error, toward gold), C (error->correct) and D (correct->error)
    f = r.per_agent[2].flips[0]
    assert (f.correct_to_error, f.error_to_correct, f.toward_gold, f.away_from_gold) == (2, 1, 2, 1)
    assert r.metrics.fpr == 0.5 and r.metrics.veracity.recall == 0.5


async def test_triage_sends_easy_texts_to_one_agent_and_hard_ones_to_the_team(store, fake_server, engine,
                                                                             tmp_path):
    def responder(body):
        prompt = body["messages"][-1]["content"]
        if "How hard is it to verify" in prompt:
            return json.dumps({"reasoning": "r", "difficulty": "hard" if case_of(prompt) in "BD" else "easy"})
        if "The specialists found" in prompt:
            return reply("error", 0) if case_of(prompt) == "B" else reply("correct", None)
        return checker(body)

    fake_server.responder = responder
    deps = FactcheckDeps(store, engine(), parse_method("roles@2+triage"), FactcheckConfig(), dataset="facts")
    await run_factcheck(deps, dataset(tmp_path), {})
    # easy (A, C): triage + one agent; hard (B, D): triage + 2 specialists + moderator
    assert len(fake_server.requests) == 2 * 2 + 2 * 4
    specialist_prompts = [b["messages"][-1]["content"] for b in fake_server.requests
                          if "You are the team's" in b["messages"][-1]["content"]]
    assert len(specialist_prompts) == 4 and sum("internist" in p for p in specialist_prompts) == 2
    m = method_result(store, deps.job_key, n_resamples=50).metrics
    # A error@1 (TP, located), B moderator error@0 (TP, located), C error (FP), D correct (TN)
    assert (m.veracity.recall, m.fpr, m.localisation.tp) == (1.0, 0.5, 2)


async def test_budget_forcing_rejects_short_reasoning_and_records_the_failure(store, fake_server, engine, tmp_path):
    fake_server.responder = lambda body: reply("correct", None, "Too short.")
    deps = FactcheckDeps(store, engine(), parse_method("budget@200"), FactcheckConfig(), dataset="facts")
    report = await run_factcheck(deps, dataset(tmp_path)[:1], {})
    assert report.summary.failed == 1 and len(fake_server.requests) == 2  # the reply, then one repair
    assert "at least 200 characters" in fake_server.requests[1]["messages"][-1]["content"] or \
        "200" in fake_server.requests[1]["messages"][-1]["content"]
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(CheckAnswer)) == 0  # no silent empty answer
        assert s.scalars(select(LLMCall).where(LLMCall.ok.is_(False))).one().error


async def test_llm_location_judge_can_accept_a_neighbouring_location(store, fake_server, engine, tmp_path):
    def responder(body):
        prompt = body["messages"][-1]["content"]
        if "Does the checker's finding identify the same error" in prompt:
            return json.dumps({"explanation": "same claim", "same_error": True})
        if case_of(prompt) == "A":
            return reply("error", 0)  # flags A at the wrong sentence
        return reply("correct", None)

    fake_server.responder = responder
    settings = FactcheckConfig(localisation="llm")
    by_sentence = FactcheckDeps(store, engine(), parse_method("cot"), FactcheckConfig(), dataset="facts")
    by_judge = FactcheckDeps(store, engine(), parse_method("cot"), settings, dataset="facts",
                             location_judge=engine("judge"))
    await run_factcheck(by_sentence, dataset(tmp_path), {})
    await run_factcheck(by_judge, dataset(tmp_path), {})
    assert method_result(store, by_sentence.job_key, n_resamples=20).metrics.localisation.tp == 0
    assert method_result(store, by_judge.job_key, n_resamples=20).metrics.localisation.tp == 1
    judge_calls = [b for b in fake_server.requests if b["model"] == "judge"]
    assert len(judge_calls) == 1 and "Paracetamol may be taken at 10 g" in judge_calls[0]["messages"][-1]["content"]


def test_cli_runs_methods_and_writes_the_comparison(tmp_path, fake_server):
    from typer.testing import CliRunner

    from carealign.cli import app

    fake_server.responder = checker
    data = tmp_path / "facts.jsonl"
    write_jsonl(data, TEXTS)
    db, out = str(tmp_path / "f.db"), tmp_path / "report"
    runner = CliRunner(env={"COLUMNS": "250"})
    res = runner.invoke(app, ["--db", db, "--base-url", fake_server.base_url, "factcheck", "run", str(data),
                              "--methods", "zero-shot,debate@3x2,sc@6", "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    assert "compute-matched: debate@3x2 vs sc@6" in res.stdout.replace("\n", " ")
    md = (out / "factcheck_report.md").read_text()
    assert "| zero-shot | 4 | 0.500 | 0.500 |" in md and "## By round" in md and "## Compute-matched pairs" in md
    assert (out / "fpr_vs_recall.png").read_bytes()[:4] == b"\x89PNG" and (out / "fpr_by_round.png").exists()
    calls = len(fake_server.requests)
    # sc@6's first three samples are the very requests of debate round 0: answered from the cache,
    # yet counted as sc@6's compute in the report
    assert calls == 4 * (1 + 6 + 6) - 4 * 3
    assert re.search(r"\| sc@6 \| 4 \|( [^|]+ \|){9} 6\.00 \|", md), md
    res = runner.invoke(app, ["--db", db, "factcheck", "report", "--out-dir", str(tmp_path / "again")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "again" / "factcheck_report.md").read_text() == md and len(fake_server.requests) == calls


def test_cli_bad_dataset_line_leaves_no_store(tmp_path, fake_server):
    from typer.testing import CliRunner

    from carealign.cli import app

    data = tmp_path / "bad.jsonl"
    bad = dict(TEXTS[0], error_sentence_id=7)
    data.write_text(json.dumps(TEXTS[2]) + "\n" + json.dumps(bad) + "\n")
    res = CliRunner().invoke(app, ["--db", str(tmp_path / "x.db"), "--base-url", fake_server.base_url,
                                   "factcheck", "run", str(data), "--methods", "cot"])
    assert res.exit_code == 2 and "bad.jsonl:2" in res.output and "error_sentence_id" in res.output
    assert not (tmp_path / "x.db").exists() and not fake_server.requests


def test_cli_on_mederrbench_rows(tmp_path, fake_server):
    from typer.testing import CliRunner

    from carealign.cli import app
    from tests.conftest import SHARED

    csv = SHARED / "data" / "mederrbench" / "EN_validation.csv"
    if not csv.exists():
        pytest.skip(f"MedErrBench is not at {csv} (../shared absent)")
    fake_server.responder = lambda body: reply("correct", None)
    out = tmp_path / "r"
    res = CliRunner(env={"COLUMNS": "250"}).invoke(app, [
        "--db", str(tmp_path / "m.db"), "--base-url", fake_server.base_url, "factcheck", "run", str(csv),
        "--limit", "6", "--methods", "cot", "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    items = load_dataset(csv)[:6]
    n_err = sum(i.label == "error" for i in items)
    # a checker that never flags: recall 0, FPR 0, accuracy = share of correct texts
    assert f"| cot | 6 | 0.000 | 0.000 | 0.000 [0.000, 0.000] | {(6 - n_err) / 6:.3f} | 0.000" in \
        (out / "factcheck_report.md").read_text()
    prompt = fake_server.requests[0]["messages"][-1]["content"]
    assert f"0. {items[0].sentences[0]}" in prompt and items[0].label not in ("", None)


async def test_texts_without_an_answer_are_counted_not_silently_dropped(store, fake_server, engine, tmp_path):
    from benchmarks.factcheck_report import summary_rows

    fake_server.responder = lambda body: "no json here" if "Case B" in body["messages"][-1]["content"] \
        else checker(body)
    deps = FactcheckDeps(store, engine(), parse_method("zero-shot"), FactcheckConfig(), dataset="facts")
    report = await run_factcheck(deps, dataset(tmp_path), {"method": "zero-shot"})
    assert report.summary.failed == 1
    r = method_result(store, deps.job_key, n_resamples=20)
    assert (r.n_texts, r.n_queued, r.failed_calls) == (3, 4, 1)
    assert summary_rows([r])[1][0][1] == "3 (1 no answer)"
    # MEDIQA-CORR figures cover all 4 texts, B as "0 -1 NA": flags and sentences right for A and D only;
    # no gold text has a correction, so only texts predicted NA (B, D) score a point
    o = r.official
    assert (o.n_texts, o.n_unanswered, o.flag_accuracy, o.sentence_accuracy) == (4, 1, 0.5, 0.5)
    assert (o.n_pairs, o.n_correct_na, o.corrections["ROUGE-1"].composite) == (0, 2, 0.5)


def test_sentence_ids_are_an_enum_the_decoder_can_enforce():
    from agents.fact_checker import verdict_model

    schema = verdict_model(3).model_json_schema()["properties"]["error_sentence_id"]
    assert {"enum": [0, 1, 2], "type": "integer"} in schema["anyOf"]
    with pytest.raises(ValueError, match="error_sentence_id"):
        verdict_model(3).model_validate({"reasoning": "r", "verdict": "error", "error_sentence_id": 3,
                                         "confidence": 0.5})


async def test_a_vote_never_counts_fewer_agents_than_asked_and_a_rerun_fills_the_gap(store, fake_server, engine,
                                                                                     tmp_path):
    """sc@3 with one sample failing: no final answer from two votes; the item is partial with the
    reason, and a re-run makes only the failed sample's call, then votes over all three."""
    broken = {"on": True}

    def responder(body: dict) -> str:
        if broken["on"] and body["seed"] % 1000 == 2:
            raise RuntimeError("injected server fault")
        return checker(body)

    fake_server.responder = responder
    records = dataset(tmp_path)[:1]
    deps = FactcheckDeps(store, engine(), parse_method("sc@3"), FactcheckConfig(), dataset="facts")
    first = await run_factcheck(deps, records, {"method": "sc@3"})
    assert first.summary.partial == 1 and first.status == "completed_with_failures"
    assert "agent 2" in next(iter(first.summary.failures.values())).example
    with store.session() as s:
        assert s.scalars(select(CheckAnswer).where(CheckAnswer.role == "final")).all() == []
    made = len(fake_server.requests)
    broken["on"] = False
    second = await run_factcheck(deps, records, {"method": "sc@3"})
    assert second.summary.done == 1 and second.status == "completed"
    assert [b["seed"] % 1000 for b in fake_server.requests[made:]] == [2]
    with store.session() as s:
        final = s.scalars(select(CheckAnswer).where(CheckAnswer.role == "final")).one()
        assert len(final.details["answer_ids"]) == 3
