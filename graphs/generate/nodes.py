"""The generate graph's nodes: write a candidate, drop duplicates, judge a candidate, choose the pair.

Each node reads what it needs from the store by id and writes what it made before returning, so an
interrupted run loses nothing and a re-run is answered from the request cache."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.roles import RubricJudge, SimpleRubric, conversation_of
from graphs.common.candidates import answer_and_store, distinct_candidate_ids, waiting_for_calls
from graphs.generate.configuration import GenerateConfig
from graphs.generate.state import GenerateState, JudgeTask, SampleTask
from store import Store
from store.lookups import candidate_text, candidates, item_payload
from store.records import add_judgments, add_pairs


@dataclass
class GenerateDeps:
    """What the nodes run against: the store, the two engines, the rubric, the settings and the seed."""

    store: Store
    generator: LLMEngine
    judge: LLMEngine
    rubric: SimpleRubric
    config: GenerateConfig
    seed: int = 0


class GenerateNodes:
    """Node functions bound to their dependencies (read only when a node runs, so the graph can be
    built without them to be drawn)."""

    def __init__(self, deps: GenerateDeps | None):
        self.deps = deps

    @cached_property
    def grader(self) -> RubricJudge:
        d = self.deps
        return RubricJudge(d.judge, d.rubric, d.config.judge_mode, d.config.judge_scoring)

    async def generate_candidate(self, task: SampleTask) -> dict[str, Any]:
        d, i = self.deps, task["sample_index"]
        return await answer_and_store(d.store, d.generator, item_payload(d.store, task["item_id"]), task["run_id"],
                                      task["item_id"], i, d.seed + i)

    def dedupe_candidates(self, state: GenerateState) -> dict[str, Any]:
        """Exact duplicates (after whitespace/case normalisation) are judged once, paired never."""
        return {"distinct_ids": distinct_candidate_ids(self.deps.store, state.get("candidate_ids", []))}

    async def judge_candidate(self, task: JudgeTask) -> dict[str, Any]:
        d, cid = self.deps, task["candidate_id"]
        ctx = CallContext(run_id=task["run_id"], item_id=task["item_id"])
        try:
            grades = await self.grader.grade(item_payload(d.store, task["item_id"]), candidate_text(d.store, cid), ctx)
        except LLMCallFailed as exc:
            return {"failures": [f"judge[candidate {cid}]: {exc.reason}"]}
        scores = {name: g.score for name, g in grades.items()}
        with d.store.session() as s:
            jids = add_judgments(s, [
                {"run_id": task["run_id"], "candidate_id": cid, "llm_call_id": g.call_id, "criterion": name,
                 "criterion_kind": "generic", "score": g.score, "reason": g.reason,
                 "details": {**g.reading.as_dict(), "mode": d.config.judge_mode}, "judge_model": d.judge.model}
                for name, g in grades.items()
            ])
        return {"graded": [{"candidate_id": cid, "weighted": d.rubric.weighted(scores), "scores": scores,
                            "judgment_ids": jids}]}

    def select_pair(self, state: GenerateState) -> dict[str, Any]:
        """Best vs worst once every call succeeded (or ``min_candidates`` were graded): a pair is never
        formed from fewer candidates than asked unless the settings allow it, and then it says so."""
        d = self.deps
        graded = sorted(state.get("graded", []), key=lambda g: (-g["weighted"], g["candidate_id"]))
        failures = state.get("failures", [])
        if failures and (d.config.min_candidates is None or len(graded) < d.config.min_candidates):
            return {"paired": False, "outcome": waiting_for_calls(state, len(state.get("candidate_ids", [])),
                                                                  d.config.n_candidates)}
        if len(graded) < 2:
            return {"paired": False, "outcome": f"no pair: {len(graded)} graded distinct candidate(s)"}
        best, worst = graded[0], graded[-1]
        margin = best["weighted"] - worst["weighted"]
        if margin < d.config.min_margin:
            return {"paired": False, "outcome": f"no pair: margin {margin:.2f} < {d.config.min_margin}"}
        rows = candidates(d.store, [best["candidate_id"], worst["candidate_id"]])
        chosen, rejected = rows[best["candidate_id"]], rows[worst["candidate_id"]]
        payload = item_payload(d.store, state["item_id"])
        pair = {
            "kind": "generic", "run_id": state["run_id"], "item_id": state["item_id"],
            "prompt": conversation_of(payload), "chosen": chosen.text, "rejected": rejected.text,
            "chosen_candidate_id": chosen.id, "rejected_candidate_id": rejected.id, "margin": margin,
            "margins": {k: best["scores"][k] - worst["scores"][k] for k in best["scores"]},
            "language": payload.get("lang"),
            "provenance": {
                "rubric": d.rubric.name, "judge_model": d.judge.model, "generator_model": d.generator.model,
                "llm_call_ids": [chosen.llm_call_id, rejected.llm_call_id],
                "judgment_ids": best["judgment_ids"] + worst["judgment_ids"],
                "candidates": {"graded": len(graded), "asked": d.config.n_candidates, "failed_calls": len(failures)},
            },
        }
        with d.store.session() as s:
            new = add_pairs(s, [pair])
        return {"paired": True, "outcome": "pair stored" if new else "pair already stored"}
