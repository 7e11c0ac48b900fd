"""The cheap hot path of factcheck and rubric-prefs (issue 20) gives up nothing: an answer slot keeps
what was stored first, a resumed text sees the answers an earlier run stored, gradings are stored
once with their judgments' ids, and a cached prompt renders what the template file says."""

from __future__ import annotations

import asyncio

import pytest

from agents import prompts
from agents.fact_checker import FactChecker
from graphs.factcheck.memory import CheckMemory
from store import StoreError
from store.hot_path import GradedCandidate, insert_graded
from store.models import CandidateScore, Judgment
from store.records import add_candidate, create_run, insert_llm_calls, upsert_items


def _answer(run_id: str, item_id: int, role: str, rnd: int, agent: int, verdict: str) -> dict:
    return {"run_id": run_id, "job_key": "job", "item_id": item_id, "method": "debate@2x2", "role": role,
            "round": rnd, "agent": agent, "verdict": verdict, "sentence_id": 1 if verdict == "error" else None,
            "span": None, "correction": None, "confidence": 0.5, "reasoning": f"{role} {agent}",
            "llm_call_id": None, "model": "m", "details": {"specialist": None}}


def _text(store, sentences: list[str], **fields) -> tuple[str, int]:
    with store.session() as s:
        run_id = create_run(s, "factcheck", {})
        [item_id] = upsert_items(s, "facts", [{"payload": {"sentences": sentences, **fields}}])
    return run_id, item_id


async def test_an_answer_slot_keeps_the_first_answer_and_a_resumed_text_sees_earlier_ones(store):
    run_id, item_id = _text(store, ["Aspirin is an NSAID.", "It cures viral infections."])
    earlier = CheckMemory(store, "job")  # an earlier run: round 0 of agent 1 stored, then interrupted
    first = await earlier.save(_answer(run_id, item_id, "agent", 0, 1, "error"))
    memory = CheckMemory(store, "job")  # this run
    mine, again = await asyncio.gather(memory.save(_answer(run_id, item_id, "agent", 0, 0, "correct")),
                                       memory.save(_answer(run_id, item_id, "agent", 0, 1, "correct")))
    assert again.id == first.id and again.verdict == "error"  # the slot keeps what was stored first
    await memory.save(_answer(run_id, item_id, "final", 0, -1, "error"))
    round0 = await memory.round_answers(item_id, 0)  # agents only, in agent order, earlier ones included
    assert [(a.agent, a.verdict, a.reasoning) for a in round0] == [(0, "correct", "agent 0"), (1, "error", "agent 1")]
    assert (await memory.answer(item_id, mine.id)).details == {"specialist": None}
    assert (await CheckMemory(store, "job").answer(item_id, first.id)).verdict == "error"  # read from the store
    with pytest.raises(StoreError, match="is not in the store"):
        await memory.answer(item_id, first.id + 1000)
    assert await CheckMemory(store, "another job").round_answers(item_id, 0) == []  # answers are per job


async def test_the_prompt_language_is_decided_once_as_the_checker_would(store, fake_server, make_engine):
    zh = ["阿司匹林是一种非甾体抗炎药。", "它可以治愈病毒感染。"]
    _, zh_item = _text(store, zh)
    _, declared = _text(store, ["Aspirin is an NSAID."], lang="zh-CN")
    memory = CheckMemory(store, "job")
    checker = FactChecker(make_engine(fake_server, store))
    assert await memory.language(zh_item, "auto") == "zh" == checker._prompt("factcheck", zh, None).split(".")[-1]
    assert await memory.language(declared, "auto") == "zh"
    assert await memory.language(zh_item, "en") == "en"
    # passed on as the text's language it names the very prompt the checker chose by itself
    assert checker._prompt("factcheck", zh, await memory.language(zh_item, "auto")) == \
        checker._prompt("factcheck", zh, None)


def test_a_grading_is_stored_once_with_its_judgments_ids(store):
    with store.session() as s:
        run_id = create_run(s, "rubric-prefs", {})
        [item_id] = upsert_items(s, "d", [{"payload": {"prompt": "q"}}])
    answer_call, grade_call = insert_llm_calls(store, [{"request_hash": f"h{i}", "run_id": run_id, "item_id": item_id,
                                                        "model": "m", "messages": []} for i in range(2)])
    with store.session() as s:
        cid = add_candidate(s, run_id=run_id, item_id=item_id, llm_call_id=answer_call, choice_index=0,
                            sample_index=0, model="m", text="an answer")

    def judgment(criterion: str, grader: str) -> dict:
        return {"run_id": run_id, "candidate_id": cid, "llm_call_id": grade_call, "criterion": criterion,
                "criterion_kind": "positive", "met": True, "score": 1.0, "reason": "r", "judge_model": grader,
                "details": {"grader": grader}}

    graded = GradedCandidate([judgment("c1", "primary"), judgment("c2", "primary")], [],
                             {"candidate_id": cid, "job_key": "job", "run_id": run_id, "s1": 0.5, "s2": 1, "s3": 0,
                              "grader_model": "m"})
    [ids] = insert_graded(store, [graded])
    assert insert_graded(store, [graded]) == [ids]  # a re-run stores nothing twice
    with store.session() as s:
        score = s.query(CandidateScore).one()
        assert score.judgment_ids == ids and (score.s1, score.s2, score.s3) == (0.5, 1, 0)
        assert sorted(j.id for j in s.query(Judgment)) == sorted(ids)


def test_a_cached_prompt_renders_what_its_template_says_without_looking_it_up_again(monkeypatch):
    env = prompts._env(str(prompts.PROMPTS_DIR))
    expected = [{"role": role, "content": env.get_template(f"repair.{role}.j2").render(problem="P", schema={}).strip()}
                for role in prompts.ROLES if (prompts.PROMPTS_DIR / f"repair.{role}.j2").exists()]
    assert prompts.render("repair", problem="P", schema={}) == expected

    def no_lookup(*_args):
        raise AssertionError("the template files were looked up again")

    monkeypatch.setattr(prompts, "_files", no_lookup)
    assert prompts.render("repair", problem="P", schema={}) == expected
    assert prompts.render("repair", str(prompts.PROMPTS_DIR), problem="P", schema={}) == expected
