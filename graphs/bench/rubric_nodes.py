"""The rubric bench's nodes: answer and grade (score), judge a pair (pairwise), grade a completion (meta).

Each node stores its item's verdicts in ``bench_results`` (bench ``rubric`` / ``rubric_pairwise`` /
``rubric_meta``) with the calls behind them; the summary is computed exactly as HealthBench does
(``benchmarks.healthbench``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from agents.bench_roles import PairwiseJudge
from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.prompts import prompt_hashes
from agents.roles import AnswerGenerator, conversation_of
from agents.rubric import CriterionKind, Rubric, RubricCriterion, from_healthbench
from agents.rubric_grader import RubricGrader
from benchmarks.datasets.rubric_bench import summarise_meta, summarise_pairwise, summarise_scores
from graphs.bench.configuration import BenchConfig
from graphs.bench.results import BenchJob
from graphs.bench.state import RubricBenchState
from graphs.common.candidates import answer_and_store
from store import Store
from store.bench import store_result
from store.lookups import candidates, item_payload
from store.records import sha256_of

if TYPE_CHECKING:
    from store.models import BenchResult

BENCH_NAMES = {"score": "rubric", "pairwise": "rubric_pairwise", "meta": "rubric_meta"}


@dataclass
class RubricBenchDeps:
    """The store, the answering model (score mode), the grader (grades, or judges pairs), the
    ``[bench]`` settings, the seed and the dataset name."""

    store: Store
    generator: LLMEngine
    grader: LLMEngine
    config: BenchConfig
    seed: int = 0
    dataset: str = ""

    @property
    def mode(self) -> str:
        return self.config.rubric_mode

    @property
    def bench(self) -> str:
        return BENCH_NAMES[self.mode]

    @property
    def job_key(self) -> str:
        c = self.config
        return sha256_of({
            "kind": "bench-rubric", "dataset": self.dataset, "mode": self.mode, "grader_mode": c.grader_mode,
            "swap": c.pairwise_swap if self.mode == "pairwise" else None,
            "seed": self.seed, "generator": [self.generator.model, self.generator.request_params()]
            if self.mode == "score" else None, "grader": self.grader.model,
            "prompts": [prompt_hashes(p) for p in (AnswerGenerator.prompt, "grade_criterion", "grade_rubric",
                                                 PairwiseJudge.prompt)],
        })[:32]

    @property
    def job(self) -> BenchJob:
        """Scores are about the answering model; pairwise and meta about the grader."""
        model = self.generator.model if self.mode == "score" else self.grader.model
        return BenchJob(self.store, self.bench, self.job_key, self.dataset, model, self.config)

    @property
    def engines(self) -> dict[str, LLMEngine]:
        return {"grader": self.grader, **({"generator": self.generator} if self.mode == "score" else {})}


def _ctx(state: RubricBenchState) -> CallContext:
    return CallContext(run_id=state["run_id"], item_id=state["item_id"])


class RubricNodes:
    """Node functions bound to their dependencies (read only when a node runs, so the graph can be
    built without them to be drawn)."""

    def __init__(self, deps: RubricBenchDeps | None):
        self.deps = deps

    @cached_property
    def grader(self) -> RubricGrader:
        return RubricGrader(self.deps.grader, self.deps.config.grader_mode, self.deps.config.prompt_language)

    @cached_property
    def judge(self) -> PairwiseJudge:
        return PairwiseJudge(self.deps.grader, self.deps.config.prompt_language)

    async def sample_answer(self, state: RubricBenchState) -> dict[str, Any]:
        d = self.deps
        update = await answer_and_store(d.store, d.generator, item_payload(d.store, state["item_id"]),
                                        state["run_id"], state["item_id"], 0, d.seed, d.config.prompt_language)
        if "candidate_ids" in update:
            return update
        return {"failures": update.get("failures") or update.get("unusable", []), "outcome": "failed: no answer"}

    async def grade_answer(self, state: RubricBenchState) -> dict[str, Any]:
        d, cid = self.deps, state["candidate_ids"][0]
        payload = item_payload(d.store, state["item_id"])
        rubric, _ = from_healthbench(payload["rubrics"])
        answer = candidates(d.store, [cid])[cid]
        try:
            verdicts = await self.grader.grade(conversation_of(payload), answer.text, rubric, _ctx(state),
                                               payload.get("lang"))
        except LLMCallFailed as exc:
            return {"failures": [f"grade: {exc.reason}"], "outcome": "failed: not graded"}
        ordered = [verdicts[c.id] for c in rubric.criteria]
        met = [v.met for v in ordered]
        met_points = sum(i["points"] for i, m in zip(payload["rubrics"], met, strict=True) if m)
        possible = sum(i["points"] for i in payload["rubrics"] if i["points"] > 0)
        store_result(d.store, state["run_id"], d.bench, state["item_id"], d.generator.model, {
            "answer": answer.text, "candidate_id": cid, "met": met, "explanations": [v.explanation for v in ordered],
            "score": met_points / possible, "grader_model": d.grader.model, "grader_mode": d.config.grader_mode,
        }, [answer.llm_call_id, *dict.fromkeys(v.call_id for v in ordered)])
        return {"outcome": "graded"}

    async def judge_pair(self, state: RubricBenchState) -> dict[str, Any]:
        d = self.deps
        p = item_payload(d.store, state["item_id"])
        ask = self.judge.judge_both_orders if d.config.pairwise_swap else self.judge.judge
        try:
            j = await ask(conversation_of(p), p["response_a"], p["response_b"], p["criteria"], _ctx(state),
                          p.get("lang"))
        except LLMCallFailed as exc:
            return {"failures": [f"judge: {exc.reason}"], "outcome": "failed: not judged"}
        store_result(d.store, state["run_id"], d.bench, state["item_id"], d.grader.model, {
            "preferred": j.preferred, "pred_veto": [j.a_violates_veto, j.b_violates_veto], "gold": p["gold"],
            "kind": p["kind"], "gold_veto": p["gold_veto"], "correct": j.preferred == p["gold"],
            "position_consistent": j.position_consistent, "explanation": j.explanation,
        }, list(j.call_ids))
        return {"outcome": "correct" if j.preferred == p["gold"] else "wrong"}

    async def grade_completion(self, state: RubricBenchState) -> dict[str, Any]:
        d = self.deps
        p = item_payload(d.store, state["item_id"])
        rubric = Rubric(criteria=[RubricCriterion(id="c0", text=p["criterion"], kind=CriterionKind.PROFICIENCY,
                                                  weight=1.0)])
        try:
            v = (await self.grader.grade(conversation_of(p), p["completion"], rubric, _ctx(state),
                                         p.get("lang")))["c0"]
        except LLMCallFailed as exc:
            return {"failures": [f"grade: {exc.reason}"], "outcome": "failed: not graded"}
        labels = p["binary_labels"]
        store_result(d.store, state["run_id"], d.bench, state["item_id"], d.grader.model, {
            "met": v.met, "explanation": v.explanation, "binary_labels": labels, "category": p["category"],
            "agrees_with_majority": v.met == (sum(labels) * 2 > len(labels)),
        }, [v.call_id])
        return {"outcome": "met" if v.met else "not met"}

    def summarise(self, rows: list[BenchResult]) -> dict[str, Any]:
        """The mode's summary over the job's newest results (score mode reads each item's rubric)."""
        d = self.deps
        payloads = [item_payload(d.store, r.item_id) for r in rows]
        results = [{**r.metrics, "rubrics": p.get("rubrics"), "example_tags": p.get("example_tags")}
                   for r, p in zip(rows, payloads, strict=True)]
        if d.mode == "score":
            summary = summarise_scores(results, d.config.n_bootstrap, d.seed)
        elif d.mode == "pairwise":
            summary = summarise_pairwise(results)
        else:
            summary = summarise_meta(results)
        return {**summary, "grader_model": d.grader.model}
