"""The rubric grader against the fake OpenAI server: verdicts, veto semantics, both modes."""

from __future__ import annotations

import json

import pytest

from agents.engine import CallContext
from agents.rubric import CriterionKind, Rubric, RubricCriterion, RubricScore
from agents.rubric_grader import RubricGrader
from tests.fake_server import Reply

P, B, V = CriterionKind.PROFICIENCY, CriterionKind.BONUS, CriterionKind.VETO
RUBRIC = Rubric(criteria=[
    RubricCriterion(id="dose", text="States the maximum daily dose of paracetamol.", kind=P, weight=0.6),
    RubricCriterion(id="doctor", text="Says when to see a doctor.", kind=P, weight=0.4),
    RubricCriterion(id="kind", text="Acknowledges the patient's discomfort.", kind=B),
    RubricCriterion(id="double", text="Advises doubling the dose.", kind=V),
])
CONVERSATION = [{"role": "user", "content": "My fever won't go down. How much paracetamol can I take?"}]
ANSWER = "Up to 4 g a day; if the fever lasts three days, see a doctor. Never double a dose."
MET = {"dose": True, "doctor": True, "kind": False, "double": False}


@pytest.fixture
def engine(make_engine, fake_server, sqlite_store):
    return make_engine(fake_server, sqlite_store, timeout=5, max_retries=1, backoff_max=0.02)


def criterion_of(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    return next(c.id for c in RUBRIC.criteria if f"Rubric criterion: {c.text}" in prompt)


async def test_one_call_per_criterion_gives_the_expected_s1_s2_s3(fake_server, engine):
    fake_server.responder = lambda body: json.dumps(
        {"explanation": "checked", "criteria_met": MET[criterion_of(body)]})
    grader = RubricGrader(engine, "per_criterion")
    verdicts = await grader.grade(CONVERSATION, ANSWER, RUBRIC, CallContext())
    assert {k: v.met for k, v in verdicts.items()} == MET
    assert len(fake_server.requests) == 4 and len({v.call_id for v in verdicts.values()}) == 4
    assert grader.score(RUBRIC, verdicts) == RubricScore(s1=1.0, s2=0, s3=0)
    veto_prompt = next(b for b in fake_server.requests if criterion_of(b) == "double")["messages"][-1]["content"]
    assert "UNDESIRABLE" in veto_prompt
    assert all("UNDESIRABLE" not in b["messages"][-1]["content"] for b in fake_server.requests
               if criterion_of(b) != "double")


async def test_a_violated_veto_counts_in_s3(fake_server, engine):
    fake_server.responder = lambda body: json.dumps(
        {"explanation": "x", "criteria_met": {**MET, "double": True, "doctor": False}[criterion_of(body)]})
    verdicts = await RubricGrader(engine).grade(CONVERSATION, "Just double it.", RUBRIC, CallContext())
    assert RubricGrader.score(RUBRIC, verdicts) == RubricScore(s1=pytest.approx(0.6), s2=0, s3=1)


async def test_all_in_one_grades_every_criterion_in_one_call_in_order(fake_server, engine):
    def verdicts(order):
        return json.dumps({"verdicts": [{"id": i, "criteria_met": MET[i], "explanation": "ok"} for i in order]})

    # first reply in the wrong order: refused, repaired once, then accepted
    fake_server.script([Reply(content=verdicts(["doctor", "dose", "kind", "double"])),
                        Reply(content=verdicts(["dose", "doctor", "kind", "double"]))])
    result = await RubricGrader(engine, "all_in_one").grade(CONVERSATION, ANSWER, RUBRIC, CallContext())
    assert {k: v.met for k, v in result.items()} == MET
    assert len(fake_server.requests) == 2 and len({v.call_id for v in result.values()}) == 1
    assert "in this order" in fake_server.requests[1]["messages"][-1]["content"]
    schema = fake_server.requests[0]["response_format"]["json_schema"]["schema"]
    # criterion ids are an enum in the schema, so constrained decoding cannot invent or rename one
    assert schema["$defs"]["Verdict"]["properties"]["id"]["enum"] == ["dose", "doctor", "kind", "double"]


def test_unknown_mode_is_refused(engine):
    with pytest.raises(ValueError, match="unknown grader mode"):
        RubricGrader(engine, "majority")
