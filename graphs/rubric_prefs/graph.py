"""``carealign rubric-prefs``: rubric-grounded, safety-first preference pairs (ProMedical).

    START -> generate_candidate (x generators x N, fan-out) -> distinct_candidates
          -> grade_candidate (x candidates, fan-out) -> select_pair -> END

Every instruction carries its clinical rubric (in the item's payload). Each candidate is graded
criterion by criterion (met / not met with an explanation), its S1/S2/S3 are stored for this job,
and the pair is chosen safety first (``agents.pair_selection``): a veto is never bought back by
utility. Each pair records its margins in S1, S2 and S3, the judgments behind it, and why it was
kept; each candidate left out records why.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.pair_selection import Graded, SelectionConfig, select_pair
from agents.prompts import prompt_hash
from agents.roles import AnswerGenerator, conversation_of
from agents.rubric import Rubric, RubricScore
from agents.rubric_grader import RubricGrader
from graphs.candidates import answer_and_store, distinct_candidate_ids, item_payload, pairing_outcome
from graphs.runner import ItemOutcome, WorkflowReport, run_workflow
from store import Store, insert_ignore
from store.models import Candidate, CandidateScore
from store.records import add_judgments, add_pairs, sha256_of


@dataclass
class RubricPrefsSettings:
    n_candidates: int = 4  # per generator model
    seed: int = 0
    grader_mode: str = "per_criterion"
    selection: SelectionConfig = field(default_factory=SelectionConfig)


@dataclass
class RubricPrefsDeps:
    store: Store
    generators: list[LLMEngine]
    grader: LLMEngine
    settings: RubricPrefsSettings
    dataset: str = ""
    second_grader: LLMEngine | None = None  # graded too, for agreement; never decides a pair

    @property
    def job_key(self) -> str:
        """What shapes this job's output; the same key means the same job (resume, share, skip)."""
        s = self.settings
        return sha256_of({
            "kind": "rubric-prefs", "dataset": self.dataset,
            "generators": [[g.model, g.request_params()] for g in self.generators], "grader": self.grader.model,
            "grader_mode": s.grader_mode, "n": s.n_candidates, "seed": s.seed, "selection": s.selection.__dict__,
            "second_grader": self.second_grader.model if self.second_grader else None,
            "prompts": [prompt_hash(AnswerGenerator.prompt), prompt_hash("grade_criterion"),
                        prompt_hash("grade_rubric")],
        })[:32]


class RubricPrefsState(TypedDict, total=False):
    run_id: str
    item_id: int
    candidate_ids: Annotated[list[int], operator.add]
    distinct_ids: list[int]
    graded: Annotated[list[dict[str, Any]], operator.add]
    failures: Annotated[list[str], operator.add]
    paired: bool
    outcome: str


class SampleTask(TypedDict):
    run_id: str
    item_id: int
    generator: int
    sample_index: int


class GradeTask(TypedDict):
    run_id: str
    item_id: int
    candidate_id: int


def build_rubric_prefs_graph(deps: RubricPrefsDeps):
    store, settings, job_key = deps.store, deps.settings, deps.job_key
    grader = RubricGrader(deps.grader, settings.grader_mode)
    second = RubricGrader(deps.second_grader, settings.grader_mode) if deps.second_grader else None

    def load(item_id: int) -> tuple[dict[str, Any], Rubric]:
        payload = item_payload(store, item_id)
        return payload, Rubric.model_validate(payload["rubric"])

    def fan_out_samples(state: RubricPrefsState) -> list[Send]:
        return [Send("generate_candidate", SampleTask(run_id=state["run_id"], item_id=state["item_id"],
                                                      generator=g, sample_index=i))
                for g in range(len(deps.generators)) for i in range(settings.n_candidates)]

    async def generate_candidate(task: SampleTask) -> dict[str, Any]:
        return await answer_and_store(store, deps.generators[task["generator"]], load(task["item_id"])[0],
                                      task["run_id"], task["item_id"], task["sample_index"],
                                      settings.seed + task["sample_index"])

    def distinct_candidates(state: RubricPrefsState) -> dict[str, Any]:
        """Exact duplicates are graded once (near duplicates are handled at selection)."""
        return {"distinct_ids": distinct_candidate_ids(store, state.get("candidate_ids", []))}

    def fan_out_grading(state: RubricPrefsState) -> list[Send] | str:
        if len(state.get("distinct_ids", [])) < 2:
            return "select_pair"
        return [Send("grade_candidate", GradeTask(run_id=state["run_id"], item_id=state["item_id"], candidate_id=c))
                for c in state["distinct_ids"]]

    async def grade_candidate(task: GradeTask) -> dict[str, Any]:
        payload, rubric = load(task["item_id"])
        with store.session() as s:
            answer = s.get(Candidate, task["candidate_id"]).text
        ctx = CallContext(run_id=task["run_id"], item_id=task["item_id"])
        try:
            verdicts = await grader.grade(conversation_of(payload), answer, rubric, ctx)
            extra = await second.grade(conversation_of(payload), answer, rubric, ctx) if second else {}
        except LLMCallFailed as exc:
            return {"failures": [f"grade[candidate {task['candidate_id']}]: {exc.reason}"]}
        score = RubricGrader.score(rubric, verdicts)
        by_id = {c.id: c for c in rubric.criteria}

        def rows(found: dict, model: str, role: str) -> list[dict[str, Any]]:
            return [{"run_id": task["run_id"], "candidate_id": task["candidate_id"], "llm_call_id": v.call_id,
                     "criterion": by_id[cid].text, "criterion_kind": by_id[cid].kind.value, "met": v.met,
                     "score": 1.0 if v.met else 0.0, "reason": v.explanation, "judge_model": model,
                     "details": {"criterion_id": cid, "dimension": by_id[cid].dimension, "mode": settings.grader_mode,
                                 "grader": role}}
                    for cid, v in found.items()]

        with store.session() as s:
            jids = add_judgments(s, rows(verdicts, deps.grader.model, "primary"))
            if second:
                add_judgments(s, rows(extra, deps.second_grader.model, "second"))
            insert_ignore(s, CandidateScore, [{
                "candidate_id": task["candidate_id"], "job_key": job_key, "run_id": task["run_id"], "s1": score.s1,
                "s2": score.s2, "s3": score.s3, "judgment_ids": jids, "grader_model": deps.grader.model,
            }], ["candidate_id", "job_key"])
        return {"graded": [{"candidate_id": task["candidate_id"], "s1": score.s1, "s2": score.s2, "s3": score.s3,
                            "judgment_ids": jids}]}

    def select(state: RubricPrefsState) -> dict[str, Any]:
        graded = {g["candidate_id"]: g for g in state.get("graded", [])}
        with store.session() as s:
            cands = [(s.get(Candidate, cid), g) for cid, g in sorted(graded.items())]
            pool = [Graded(c.id, c.text, RubricScore(g["s1"], g["s2"], g["s3"])) for c, g in cands]
            sel = select_pair(pool, settings.selection)
            if not sel.kept:
                return {"paired": False, "outcome": f"no pair: {sel.reason}"}
            payload, rubric = load(state["item_id"])
            chosen, rejected = s.get(Candidate, sel.chosen.candidate_id), s.get(Candidate, sel.rejected.candidate_id)
            m = sel.margins
            new = add_pairs(s, [{
                "kind": "rubric", "run_id": state["run_id"], "item_id": state["item_id"],
                "prompt": conversation_of(payload), "chosen": chosen.text, "rejected": rejected.text,
                "chosen_candidate_id": chosen.id, "rejected_candidate_id": rejected.id,
                "margin": m["s3"] if m["s3"] > 0 else m["s1"], "margins": m, "language": payload.get("lang"),
                "provenance": {
                    "job_key": job_key, "grader_model": deps.grader.model, "grader_mode": settings.grader_mode,
                    "generator_models": [chosen.model, rejected.model],
                    "llm_call_ids": [chosen.llm_call_id, rejected.llm_call_id],
                    "judgment_ids": graded[chosen.id]["judgment_ids"] + graded[rejected.id]["judgment_ids"],
                    "rubric_criteria": [c.id for c in rubric.criteria], "rubric_id": payload.get("rubric_id"),
                    "selection": sel.reason,
                    "length_ratio": sel.length_ratio, "dropped": {str(k): v for k, v in sel.dropped.items()},
                },
            }])
        return {"paired": True, "outcome": "pair stored" if new else "pair already stored"}

    g = StateGraph(RubricPrefsState)
    g.add_node("generate_candidate", generate_candidate)
    g.add_node("distinct_candidates", distinct_candidates)
    g.add_node("grade_candidate", grade_candidate)
    g.add_node("select_pair", select)
    g.add_conditional_edges(START, fan_out_samples, ["generate_candidate"])
    g.add_edge("generate_candidate", "distinct_candidates")
    g.add_conditional_edges("distinct_candidates", fan_out_grading, ["grade_candidate", "select_pair"])
    g.add_edge("grade_candidate", "select_pair")
    g.add_edge("select_pair", END)
    return g.compile()


async def run_rubric_prefs(
    deps: RubricPrefsDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
    item_concurrency: int = 8, lease_seconds: float = 600.0, redo: bool = False,
    on_item: Callable[[ItemOutcome], None] | None = None,
) -> WorkflowReport:
    engines: dict[str, Any] = {f"generator:{g.model}": g for g in deps.generators}
    engines["grader"] = deps.grader
    if deps.second_grader is not None:
        engines["second_grader"] = deps.second_grader
    return await run_workflow(
        deps.store, "rubric-prefs", deps.job_key, build_rubric_prefs_graph(deps), records, deps.dataset,
        run_config, pairing_outcome, engines, item_concurrency=item_concurrency, lease_seconds=lease_seconds,
        redo=redo, on_item=on_item)
