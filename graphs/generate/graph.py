"""``carealign generate``: N candidate answers per instruction, judged, best vs worst stored as a pair.

    START -> generate_candidate (x N, fan-out) -> dedupe_candidates
          -> judge_candidate (x unique candidates, fan-out) -> select_pair -> END

The state holds ids and scores, not texts: every text lives in the store, written by the node that
produced it, so an interrupted run loses nothing and a re-run is answered from the request cache.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.prompts import prompt_hash
from agents.roles import AnswerGenerator, RubricJudge, SimpleRubric, conversation_of
from graphs.candidates import answer_and_store, distinct_candidate_ids, item_payload, pairing_outcome
from graphs.runner import ItemOutcome, WorkflowReport, run_workflow
from store import Store
from store.models import Candidate
from store.records import (
    add_judgments,
    add_pairs,
    get_item,
    sha256_of,
)


@dataclass
class GenerateSettings:
    n_candidates: int = 4
    min_margin: float = 1.0  # on the judge's 0-10 weighted scale; smaller gaps are not preferences
    seed: int = 0
    judge_mode: str = "all_in_one"  # or "per_criterion" (agents.roles.JUDGE_MODES)
    judge_scoring: str = "sampled"  # or "expected" (probability-weighted, needs top_logprobs)


class GenerateState(TypedDict, total=False):
    run_id: str
    item_id: int
    candidate_ids: Annotated[list[int], operator.add]
    unique_ids: list[int]
    graded: Annotated[list[dict[str, Any]], operator.add]
    failures: Annotated[list[str], operator.add]
    paired: bool
    outcome: str


class SampleTask(TypedDict):
    run_id: str
    item_id: int
    sample_index: int


class JudgeTask(TypedDict):
    run_id: str
    item_id: int
    candidate_id: int


@dataclass
class GenerateDeps:
    store: Store
    generator: LLMEngine
    judge: LLMEngine
    rubric: SimpleRubric
    settings: GenerateSettings


def build_generate_graph(deps: GenerateDeps):
    """Assemble the graph; nodes are closures over ``deps`` (store, engines, rubric, settings)."""
    store, settings = deps.store, deps.settings
    grader = RubricJudge(deps.judge, deps.rubric, settings.judge_mode, settings.judge_scoring)

    def load_payload(item_id: int) -> dict[str, Any]:
        return item_payload(store, item_id)

    def fan_out_samples(state: GenerateState) -> list[Send]:
        return [
            Send("generate_candidate", SampleTask(run_id=state["run_id"], item_id=state["item_id"], sample_index=i))
            for i in range(settings.n_candidates)
        ]

    async def generate_candidate(task: SampleTask) -> dict[str, Any]:
        return await answer_and_store(store, deps.generator, load_payload(task["item_id"]), task["run_id"],
                                      task["item_id"], task["sample_index"], settings.seed + task["sample_index"])

    def dedupe_candidates(state: GenerateState) -> dict[str, Any]:
        """Exact duplicates (after whitespace/case normalisation) are judged once, paired never."""
        return {"unique_ids": distinct_candidate_ids(store, state.get("candidate_ids", []))}

    def fan_out_judging(state: GenerateState) -> list[Send] | str:
        if len(state.get("unique_ids", [])) < 2:
            return "select_pair"
        return [
            Send("judge_candidate", JudgeTask(run_id=state["run_id"], item_id=state["item_id"], candidate_id=cid))
            for cid in state["unique_ids"]
        ]

    async def judge_candidate(task: JudgeTask) -> dict[str, Any]:
        with store.session() as s:
            answer = s.get(Candidate, task["candidate_id"]).text
        ctx = CallContext(run_id=task["run_id"], item_id=task["item_id"])
        try:
            grades = await grader.grade(load_payload(task["item_id"]), answer, ctx)
        except LLMCallFailed as exc:
            return {"failures": [f"judge[candidate {task['candidate_id']}]: {exc.reason}"]}
        scores = {name: g.score for name, g in grades.items()}
        weighted = deps.rubric.weighted(scores)
        with store.session() as s:
            jids = add_judgments(s, [
                {"run_id": task["run_id"], "candidate_id": task["candidate_id"], "llm_call_id": g.call_id,
                 "criterion": name, "criterion_kind": "generic", "score": g.score, "reason": g.reason,
                 "details": {**g.reading.as_dict(), "mode": settings.judge_mode}, "judge_model": deps.judge.model}
                for name, g in grades.items()
            ])
        return {"graded": [{"candidate_id": task["candidate_id"], "weighted": weighted, "scores": scores,
                            "judgment_ids": jids}]}

    def select_pair(state: GenerateState) -> dict[str, Any]:
        graded = sorted(state.get("graded", []), key=lambda g: (-g["weighted"], g["candidate_id"]))
        if len(graded) < 2:
            return {"paired": False, "outcome": f"no pair: {len(graded)} graded distinct candidate(s)"}
        best, worst = graded[0], graded[-1]
        margin = best["weighted"] - worst["weighted"]
        if margin < settings.min_margin:
            return {"paired": False, "outcome": f"no pair: margin {margin:.2f} < {settings.min_margin}"}
        with store.session() as s:
            chosen, rejected = s.get(Candidate, best["candidate_id"]), s.get(Candidate, worst["candidate_id"])
            payload = dict(get_item(s, state["item_id"]).payload)
            pair = {
                "kind": "generic", "run_id": state["run_id"], "item_id": state["item_id"],
                "prompt": conversation_of(payload), "chosen": chosen.text, "rejected": rejected.text,
                "chosen_candidate_id": chosen.id, "rejected_candidate_id": rejected.id, "margin": margin,
                "margins": {k: best["scores"][k] - worst["scores"][k] for k in best["scores"]},
                "language": payload.get("lang"),
                "provenance": {
                    "rubric": deps.rubric.name, "judge_model": deps.judge.model,
                    "generator_model": deps.generator.model,
                    "llm_call_ids": [chosen.llm_call_id, rejected.llm_call_id],
                    "judgment_ids": best["judgment_ids"] + worst["judgment_ids"],
                },
            }
            new = add_pairs(s, [pair])
        return {"paired": True, "outcome": "pair stored" if new else "pair already stored"}

    g = StateGraph(GenerateState)
    g.add_node("generate_candidate", generate_candidate)
    g.add_node("dedupe_candidates", dedupe_candidates)
    g.add_node("judge_candidate", judge_candidate)
    g.add_node("select_pair", select_pair)
    g.add_conditional_edges(START, fan_out_samples, ["generate_candidate"])
    g.add_edge("generate_candidate", "dedupe_candidates")
    g.add_conditional_edges("dedupe_candidates", fan_out_judging, ["judge_candidate", "select_pair"])
    g.add_edge("judge_candidate", "select_pair")
    g.add_edge("select_pair", END)
    return g.compile()


def job_key_for(deps: GenerateDeps, dataset: str) -> str:
    """What shapes this job's output; the same key means the same job (resume, share, skip)."""
    return sha256_of({
        "kind": "generate", "dataset": dataset, "generator": deps.generator.model,
        "generator_params": deps.generator.request_params(), "judge": deps.judge.model,
        "rubric": [c.__dict__ for c in deps.rubric.criteria], "settings": deps.settings.__dict__,
        "prompts": [prompt_hash(AnswerGenerator.prompt), prompt_hash("judge"), prompt_hash("judge_criterion")],
    })[:32]


async def run_generate(
    deps: GenerateDeps, records: list[dict[str, Any]], dataset: str, run_config: dict[str, Any], *,
    item_concurrency: int = 8, lease_seconds: float = 600.0, redo: bool = False,
    on_item: Callable[[ItemOutcome], None] | None = None,
) -> WorkflowReport:
    """Store the inputs, queue them under this job, and run the graph over the queue.

    Items already done by an earlier run of the same job are skipped; failed ones are retried;
    ``redo`` queues every item again (used with the cache off)."""
    return await run_workflow(
        deps.store, "generate", job_key_for(deps, dataset), build_generate_graph(deps), records, dataset,
        run_config, pairing_outcome, {"generator": deps.generator, "judge": deps.judge},
        item_concurrency=item_concurrency, lease_seconds=lease_seconds, redo=redo, on_item=on_item)
