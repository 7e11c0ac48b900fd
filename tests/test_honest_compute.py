"""Honest compute (issue 17): a method's calls, HTTP attempts (retries and repair rounds included),
failed calls and tokens per text are what the store holds for its job, not only the calls behind
stored answers; compute matching uses them; per-round tables say how many texts they cover and
print "n/a" for a rate without a denominator; each job's progress line counts its own calls."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from sqlalchemy import case, func, select

from benchmarks.datasets.factcheck import load_dataset
from benchmarks.factcheck_metrics import ScoredText, factcheck_metrics
from benchmarks.factcheck_report import MethodResult, compact_rows, measured_matches, method_result, round_rows
from carealign.command import _usage_fields, _usage_totals
from graphs.factcheck.configuration import FactcheckConfig
from graphs.factcheck.graph import records_of, run_factcheck
from graphs.factcheck.methods import parse_method
from graphs.factcheck.nodes import FactcheckDeps
from store.models import CheckAnswer, LLMCall, Run
from tests.fake_server import Reply
from tests.helpers import write_jsonl

TEXTS = [
    {"id": "A", "label": "error", "error_sentence_id": 1, "text": "Case A concerns fever. Take 10 g paracetamol."},
    {"id": "B", "label": "error", "error_sentence_id": 0, "text": "Case B: a stiff neck means appendicitis. Rest."},
    {"id": "C", "label": "correct", "text": "Case C concerns asthma. Inhaled steroids reduce attacks."},
]


def reply(verdict: str, sentence: int | None) -> str:
    return json.dumps({"reasoning": "Checked.", "verdict": verdict, "error_sentence_id": sentence, "error_span": None,
                       "correction": "fixed" if verdict == "error" else None, "confidence": 0.8})


def checker(body: dict) -> str:
    """Every agent finds A's and B's errors; on C every round-1 reply is broken (no JSON, even after
    the repair round), so C's calls are spent and it ends without an answer."""
    prompt = body["messages"][-1]["content"]
    case_ = re.search(r"Case ([A-C])", prompt).group(1)
    if case_ == "C":
        return "I cannot decide." if "The other checkers answered" in prompt else reply("correct", None)
    return reply("error", {"A": 1, "B": 0}[case_])


async def test_debate_compute_counts_failed_calls_retries_and_repairs(store, fake_server, make_engine, tmp_path):
    fake_server.responder = checker
    fake_server.script([Reply(status=500)])  # the first request is retried once
    engine = make_engine(fake_server, store, model="checker", temperature=0.0, max_tokens=256, timeout=5,
                         max_retries=2, backoff_max=0.02)
    deps = FactcheckDeps(store, engine, parse_method("debate@2x2"), FactcheckConfig(), dataset="facts")
    records = records_of(load_dataset(write_jsonl(tmp_path / "facts.jsonl", TEXTS)))
    report = await run_factcheck(deps, records, {"method": "debate@2x2"})
    assert report.summary.done == 2 and report.summary.partial + report.summary.failed == 1  # C: no answer
    r = method_result(store, deps.job_key, n_resamples=20)
    with store.session() as s:
        runs = list(s.scalars(select(Run.id).where(Run.job_key == deps.job_key)))
        calls, attempts, failed, tokens = s.execute(select(
            func.count(LLMCall.id), func.sum(LLMCall.attempts), func.sum(case((LLMCall.ok.is_(False), 1), else_=0)),
            func.sum(LLMCall.prompt_tokens + LLMCall.completion_tokens)).where(LLMCall.run_id.in_(runs))).one()
        behind_answers = s.scalar(select(func.count(func.distinct(CheckAnswer.llm_call_id)))
                                  .where(CheckAnswer.job_key == deps.job_key))
    # 3 texts x 2 agents x 2 rounds, all made; C's 2 round-1 calls failed after their repair round
    assert (calls, failed) == (12, 2) and (r.calls, r.failed_calls) == (12, 2)
    assert r.attempts == attempts and attempts >= calls + 1 + 2  # + the retry + the two repair rounds
    assert r.tokens == tokens and behind_answers == 10 < r.calls  # the old count saw only 10 calls
    assert (r.n_texts, r.n_queued) == (2, 3)
    assert (r.calls_per_text, r.failed_per_text) == (4.0, pytest.approx(2 / 3))
    assert r.attempts_per_text == pytest.approx(attempts / 3) and r.tokens_per_text == pytest.approx(tokens / 3)
    head, rows = compact_rows([r])
    row = dict(zip(head, rows[0], strict=True))
    assert (row["calls/text"], row["failed/text"], row["attempts/text"]) == ("4.00", "0.67", f"{attempts / 3:.2f}")
    # the per-round table covers A and B (C has no answer): both erroneous, so FPR has no denominator
    head, rows = round_rows([r])
    majority = [dict(zip(head, x, strict=True)) for x in rows if x[1] == "majority"]
    assert [(m["round"], m["texts"], m["FPR"], m["recall"]) for m in majority] == [
        ("0", "2 of 2", "n/a", "1.000"), ("1", "2 of 2", "n/a", "1.000")]
    assert row["FPR"] == "n/a" and row["R"] == "1.000"


def result(method: str, calls: int, tokens: int) -> MethodResult:
    m = factcheck_metrics([ScoredText(True, 0, "error", 0), ScoredText(False, None, "correct")])
    return MethodResult(method, method, "m", [], 2, m, {}, {}, calls, tokens, 0, n_queued=2)


def test_compute_matching_uses_measured_calls_or_tokens():
    # nominally debate@3x2 and sc@6 both make 6 calls a text; measured, debate made 8 (retries, failed calls)
    results = [result("debate@3x2", 16, 4000), result("sc@6", 12, 3900), result("sc@8", 16, 2000)]
    sides = {"debate@3x2": True, "sc@6": False, "sc@8": False}
    assert measured_matches(results, sides) == [("debate@3x2", "sc@8")]
    assert measured_matches(results, sides, by="tokens") == [("debate@3x2", "sc@6")]
    assert measured_matches(results, sides, tolerance=0.5) == [("debate@3x2", "sc@6"), ("debate@3x2", "sc@8")]


def test_each_progress_line_counts_its_own_job():
    usage = SimpleNamespace(calls=10, cache_hits=2, prompt_tokens=100, completion_tokens=50, failures=1, cost_usd=0.0)
    engine = SimpleNamespace(usage=usage)
    base = _usage_totals([engine])  # a first method already ran on this engine
    usage.calls, usage.completion_tokens, usage.failures = 14, 80, 3
    fields = _usage_fields([engine], 0.0, base)
    assert (fields["calls"], fields["hits"], fields["tokens"], fields["failed"]) == (4, 0, 30, 2)
