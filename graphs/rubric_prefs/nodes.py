"""The rubric-prefs graph's nodes: answer, drop exact duplicates, grade per criterion, choose safety first."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.pair_selection import Graded, select_pair
from agents.prompts import prompt_hash
from agents.roles import AnswerGenerator, conversation_of
from agents.rubric import Rubric, RubricScore
from agents.rubric_grader import RubricGrader
from graphs.common.candidates import answer_and_store, distinct_candidate_ids, waiting_for_calls
from graphs.rubric_prefs.configuration import RubricPrefsConfig
from graphs.rubric_prefs.state import GradeTask, RubricPrefsState, SampleTask
from store import Store
from store.lookups import candidate_text, candidates, item_payload
from store.records import add_candidate_score, add_judgments, add_pairs, sha256_of


@dataclass
class RubricPrefsDeps:
    store: Store
    generators: list[LLMEngine]
    grader: LLMEngine
    config: RubricPrefsConfig
    seed: int = 0
    dataset: str = ""
    second_grader: LLMEngine | None = None  # graded too, for agreement; never decides a pair

    @property
    def job_key(self) -> str:
        """What shapes this job's output; the same key means the same job (resume, share, skip)."""
        c = self.config
        return sha256_of({
            "kind": "rubric-prefs", "dataset": self.dataset,
            "generators": [[g.model, g.request_params()] for g in self.generators], "grader": self.grader.model,
            "grader_mode": c.grader_mode, "n": c.n_candidates, "seed": self.seed,
            "selection": c.selection().__dict__,
            "second_grader": self.second_grader.model if self.second_grader else None,
            "prompts": [prompt_hash(AnswerGenerator.prompt), prompt_hash("grade_criterion"),
                        prompt_hash("grade_rubric")],
        })[:32]


class RubricPrefsNodes:
    def __init__(self, deps: RubricPrefsDeps | None):
        self.deps = deps

    @cached_property
    def grader(self) -> RubricGrader:
        return RubricGrader(self.deps.grader, self.deps.config.grader_mode)

    @cached_property
    def second(self) -> RubricGrader | None:
        d = self.deps
        return RubricGrader(d.second_grader, d.config.grader_mode) if d.second_grader else None

    def load(self, item_id: int) -> tuple[dict[str, Any], Rubric]:
        payload = item_payload(self.deps.store, item_id)
        return payload, Rubric.model_validate(payload["rubric"])

    async def generate_candidate(self, task: SampleTask) -> dict[str, Any]:
        d, i = self.deps, task["sample_index"]
        return await answer_and_store(d.store, d.generators[task["generator"]], self.load(task["item_id"])[0],
                                      task["run_id"], task["item_id"], i, d.seed + i)

    def distinct_candidates(self, state: RubricPrefsState) -> dict[str, Any]:
        """Exact duplicates are graded once (near duplicates are handled at selection)."""
        return {"distinct_ids": distinct_candidate_ids(self.deps.store, state.get("candidate_ids", []))}

    async def grade_candidate(self, task: GradeTask) -> dict[str, Any]:
        d, cid = self.deps, task["candidate_id"]
        payload, rubric = self.load(task["item_id"])
        answer = candidate_text(d.store, cid)
        ctx = CallContext(run_id=task["run_id"], item_id=task["item_id"])
        try:
            verdicts = await self.grader.grade(conversation_of(payload), answer, rubric, ctx)
            extra = await self.second.grade(conversation_of(payload), answer, rubric, ctx) if self.second else {}
        except LLMCallFailed as exc:
            return {"failures": [f"grade[candidate {cid}]: {exc.reason}"]}
        score = RubricGrader.score(rubric, verdicts)
        by_id = {c.id: c for c in rubric.criteria}

        def rows(found: dict, model: str, role: str) -> list[dict[str, Any]]:
            return [{"run_id": task["run_id"], "candidate_id": cid, "llm_call_id": v.call_id,
                     "criterion": by_id[crit].text, "criterion_kind": by_id[crit].kind.value, "met": v.met,
                     "score": 1.0 if v.met else 0.0, "reason": v.explanation, "judge_model": model,
                     "details": {"criterion_id": crit, "dimension": by_id[crit].dimension,
                                 "mode": d.config.grader_mode, "grader": role}}
                    for crit, v in found.items()]

        with d.store.session() as s:
            jids = add_judgments(s, rows(verdicts, d.grader.model, "primary"))
            if self.second:
                add_judgments(s, rows(extra, d.second_grader.model, "second"))
            add_candidate_score(s, {"candidate_id": cid, "job_key": d.job_key, "run_id": task["run_id"],
                                    "s1": score.s1, "s2": score.s2, "s3": score.s3, "judgment_ids": jids,
                                    "grader_model": d.grader.model})
        return {"graded": [{"candidate_id": cid, "s1": score.s1, "s2": score.s2, "s3": score.s3,
                            "judgment_ids": jids}]}

    def select_pair(self, state: RubricPrefsState) -> dict[str, Any]:
        """Safety first, once every call succeeded (or ``min_candidates`` were graded)."""
        d = self.deps
        graded = {g["candidate_id"]: g for g in state.get("graded", [])}
        failures = state.get("failures", [])
        asked = d.config.n_candidates * len(d.generators)
        if failures and (d.config.min_candidates is None or len(graded) < d.config.min_candidates):
            return {"paired": False, "outcome": waiting_for_calls(state, len(state.get("candidate_ids", [])), asked)}
        rows = candidates(d.store, graded)
        pool = [Graded(cid, rows[cid].text, RubricScore(g["s1"], g["s2"], g["s3"]))
                for cid, g in sorted(graded.items())]
        sel = select_pair(pool, d.config.selection())
        if not sel.kept:
            return {"paired": False, "outcome": f"no pair: {sel.reason}"}
        payload, rubric = self.load(state["item_id"])
        chosen, rejected = rows[sel.chosen.candidate_id], rows[sel.rejected.candidate_id]
        m = sel.margins
        pair = {
            "kind": "rubric", "run_id": state["run_id"], "item_id": state["item_id"],
            "prompt": conversation_of(payload), "chosen": chosen.text, "rejected": rejected.text,
            "chosen_candidate_id": chosen.id, "rejected_candidate_id": rejected.id,
            "margin": m["s3"] if m["s3"] > 0 else m["s1"], "margins": m, "language": payload.get("lang"),
            "provenance": {
                "job_key": d.job_key, "grader_model": d.grader.model, "grader_mode": d.config.grader_mode,
                "generator_models": [chosen.model, rejected.model],
                "llm_call_ids": [chosen.llm_call_id, rejected.llm_call_id],
                "judgment_ids": graded[chosen.id]["judgment_ids"] + graded[rejected.id]["judgment_ids"],
                "rubric_criteria": [c.id for c in rubric.criteria], "rubric_id": payload.get("rubric_id"),
                "selection": sel.reason,
                "length_ratio": sel.length_ratio, "dropped": {str(k): v for k, v in sel.dropped.items()},
                "candidates": {"graded": len(graded), "asked": asked, "failed_calls": len(failures)},
            },
        }
        with d.store.session() as s:
            new = add_pairs(s, [pair])
        return {"paired": True, "outcome": "pair stored" if new else "pair already stored"}
