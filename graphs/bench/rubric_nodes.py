"""``carealign bench rubric``: HealthBench-compatible rubric scoring, ProMedical's pairwise mode and
the grader meta-evaluation (PROTOCOLS.md sections 1 and 2).

    score:    START -> sample_answer -> grade_answer -> END   (grader per item, or all items in one call)
    pairwise: START -> judge_pair -> END
    meta:     START -> grade_completion -> END

Each item's verdicts are stored in ``bench_results`` (bench ``rubric`` / ``rubric_pairwise`` /
``rubric_meta``) with the calls behind them; after the run the summary is computed exactly as
HealthBench does (``benchmarks.healthbench``) and stored as the run's ``summary`` row.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from agents.bench_roles import PairwiseJudge
from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.prompts import prompt_hash
from agents.roles import AnswerGenerator, conversation_of
from agents.rubric import CriterionKind, Rubric, RubricCriterion, from_healthbench
from agents.rubric_grader import RubricGrader
from benchmarks.rubric_bench import RUBRIC_MODES, summarise_meta, summarise_pairwise, summarise_scores
from graphs.bench_store import run_bench, store_result
from graphs.candidates import answer_and_store, item_payload
from graphs.runner import WorkflowReport
from store import Store
from store.models import Candidate
from store.records import sha256_of

BENCH_NAMES = {"score": "rubric", "pairwise": "rubric_pairwise", "meta": "rubric_meta"}


@dataclass
class RubricBenchSettings:
    mode: str = "score"  # score | pairwise | meta
    grader_mode: str = "per_criterion"  # or all_in_one
    seed: int = 0
    n_bootstrap: int = 1000  # HealthBench's resamples
    swap_positions: bool = True  # pairwise: judge both orders, count only consistent preferences

    def __post_init__(self) -> None:
        if self.mode not in RUBRIC_MODES:
            raise ValueError(f"unknown rubric bench mode {self.mode!r}; choose one of {', '.join(RUBRIC_MODES)}")


@dataclass
class RubricBenchDeps:
    store: Store
    generator: LLMEngine  # answers (score mode)
    grader: LLMEngine  # grades (score, meta) or judges pairs (pairwise)
    settings: RubricBenchSettings
    dataset: str = ""

    @property
    def bench(self) -> str:
        return BENCH_NAMES[self.settings.mode]

    @property
    def job_key(self) -> str:
        s = self.settings
        return sha256_of({
            "kind": "bench-rubric", "dataset": self.dataset, "mode": s.mode, "grader_mode": s.grader_mode,
            "swap": s.swap_positions if s.mode == "pairwise" else None,
            "seed": s.seed, "generator": [self.generator.model, self.generator.request_params()]
            if s.mode == "score" else None, "grader": self.grader.model,
            "prompts": [prompt_hash(p) for p in (AnswerGenerator.prompt, "grade_criterion", "grade_rubric",
                                                 PairwiseJudge.prompt)],
        })[:32]


class RubricBenchState(TypedDict, total=False):
    run_id: str
    item_id: int
    candidate_ids: list[int]
    failures: Annotated[list[str], operator.add]
    outcome: str


def build_rubric_bench_graph(deps: RubricBenchDeps):
    store, settings, bench = deps.store, deps.settings, deps.bench
    grader = RubricGrader(deps.grader, settings.grader_mode)
    judge = PairwiseJudge(deps.grader)

    def ctx(state: RubricBenchState) -> CallContext:
        return CallContext(run_id=state["run_id"], item_id=state["item_id"])

    def route(state: RubricBenchState) -> str:
        return {"score": "sample_answer", "pairwise": "judge_pair", "meta": "grade_completion"}[settings.mode]

    async def sample_answer(state: RubricBenchState) -> dict[str, Any]:
        update = await answer_and_store(store, deps.generator, item_payload(store, state["item_id"]),
                                        state["run_id"], state["item_id"], 0, settings.seed)
        return update if "candidate_ids" in update else {**update, "outcome": "failed: no answer"}

    def after_answer(state: RubricBenchState) -> str:
        return END if state.get("failures") else "grade_answer"

    async def grade_answer(state: RubricBenchState) -> dict[str, Any]:
        payload = item_payload(store, state["item_id"])
        rubric, _ = from_healthbench(payload["rubrics"])
        with store.session() as s:
            answer = s.get(Candidate, state["candidate_ids"][0])
            answer_text, answer_call = answer.text, answer.llm_call_id
        try:
            verdicts = await grader.grade(conversation_of(payload), answer_text, rubric, ctx(state))
        except LLMCallFailed as exc:
            return {"failures": [f"grade: {exc.reason}"], "outcome": "failed: not graded"}
        ordered = [verdicts[c.id] for c in rubric.criteria]
        met = [v.met for v in ordered]
        met_points = sum(i["points"] for i, m in zip(payload["rubrics"], met, strict=True) if m)
        possible = sum(i["points"] for i in payload["rubrics"] if i["points"] > 0)
        store_result(store, state["run_id"], bench, state["item_id"], deps.generator.model, {
            "answer": answer_text, "candidate_id": state["candidate_ids"][0], "met": met,
            "explanations": [v.explanation for v in ordered],
            "score": met_points / possible, "grader_model": deps.grader.model, "grader_mode": settings.grader_mode,
        }, [answer_call, *dict.fromkeys(v.call_id for v in ordered)])
        return {"outcome": "graded"}

    async def judge_pair(state: RubricBenchState) -> dict[str, Any]:
        p = item_payload(store, state["item_id"])
        ask = judge.judge_both_orders if settings.swap_positions else judge.judge
        try:
            j = await ask(conversation_of(p), p["response_a"], p["response_b"], p["criteria"], ctx(state))
        except LLMCallFailed as exc:
            return {"failures": [f"judge: {exc.reason}"], "outcome": "failed: not judged"}
        store_result(store, state["run_id"], bench, state["item_id"], deps.grader.model, {
            "preferred": j.preferred, "pred_veto": [j.a_violates_veto, j.b_violates_veto], "gold": p["gold"],
            "kind": p["kind"], "gold_veto": p["gold_veto"], "correct": j.preferred == p["gold"],
            "position_consistent": j.position_consistent, "explanation": j.explanation,
        }, list(j.call_ids))
        return {"outcome": "correct" if j.preferred == p["gold"] else "wrong"}

    async def grade_completion(state: RubricBenchState) -> dict[str, Any]:
        p = item_payload(store, state["item_id"])
        rubric = Rubric(criteria=[RubricCriterion(id="c0", text=p["criterion"], kind=CriterionKind.PROFICIENCY,
                                                  weight=1.0)])
        try:
            v = (await grader.grade(conversation_of(p), p["completion"], rubric, ctx(state)))["c0"]
        except LLMCallFailed as exc:
            return {"failures": [f"grade: {exc.reason}"], "outcome": "failed: not graded"}
        store_result(store, state["run_id"], bench, state["item_id"], deps.grader.model, {
            "met": v.met, "explanation": v.explanation, "binary_labels": p["binary_labels"],
            "category": p["category"], "agrees_with_majority": v.met == (sum(p["binary_labels"]) * 2
                                                                         > len(p["binary_labels"])),
        }, [v.call_id])
        return {"outcome": "met" if v.met else "not met"}

    g = StateGraph(RubricBenchState)
    g.add_node("sample_answer", sample_answer)
    g.add_node("grade_answer", grade_answer)
    g.add_node("judge_pair", judge_pair)
    g.add_node("grade_completion", grade_completion)
    g.add_conditional_edges(START, route, ["sample_answer", "judge_pair", "grade_completion"])
    g.add_conditional_edges("sample_answer", after_answer, ["grade_answer", END])
    g.add_edge("grade_answer", END)
    g.add_edge("judge_pair", END)
    g.add_edge("grade_completion", END)
    return g.compile()


def summarise(deps: RubricBenchDeps, results: list[dict[str, Any]]) -> dict[str, Any]:
    s = deps.settings
    if s.mode == "score":
        return summarise_scores(results, s.n_bootstrap, s.seed)
    if s.mode == "pairwise":
        return summarise_pairwise(results)
    return summarise_meta(results)


async def run_rubric_bench(
    deps: RubricBenchDeps, records: list[dict[str, Any]], run_config: dict[str, Any], **run: Any,
) -> tuple[WorkflowReport, dict[str, Any] | None]:
    """Run the bench, then store and return the summary (None when no item has a result)."""
    engines = {"grader": deps.grader}
    if deps.settings.mode == "score":
        engines["generator"] = deps.generator

    def summarise_rows(rows: list) -> dict[str, Any]:
        results = []
        for r in rows:
            payload = item_payload(deps.store, r.item_id)
            results.append({**r.metrics, "rubrics": payload.get("rubrics"),
                            "example_tags": payload.get("example_tags")})
        return {**summarise(deps, results), "grader_model": deps.grader.model}

    model = deps.generator.model if deps.settings.mode == "score" else deps.grader.model
    return await run_bench(deps.store, deps.bench, deps.job_key, build_rubric_bench_graph(deps), records,
                           deps.dataset, run_config, engines, model, summarise_rows, **run)
