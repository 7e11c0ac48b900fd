"""``carealign bench medication``: medication knowledge and its boundaries (ChiDrug, PROTOCOLS.md
section 5) on items in the format of ``benchmarks.medication``.

    START -> answer_item -> (grade_open) -> END

The model answers each item (an option letter, free text, or "I don't know") with a stated
confidence when the setting asks for one; open answers are graded against the reference by the
grader model. Per-item results go to ``bench_results`` (bench ``medication``); the summary (accuracy
per task, abstention, accuracy when answering, over-confidence, ECE) is the run's ``summary``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.medication_roles import MedicationAnswerer, OpenAnswerGrader
from agents.prompts import prompt_hash
from benchmarks.medication import ABSTAIN_PHRASES, is_abstention, medication_metrics
from graphs.bench_store import run_bench, store_result
from graphs.candidates import item_payload
from graphs.runner import WorkflowReport
from store import Store
from store.records import sha256_of

BENCH = "medication"


@dataclass
class MedicationBenchSettings:
    ask_confidence: bool = True
    seed: int = 0
    ece_bins: int = 10  # unpublished: equal-width bins on [0, 1]
    abstain_phrases: tuple[str, ...] = ABSTAIN_PHRASES  # open answers meaning "I don't know"


@dataclass
class MedicationBenchDeps:
    store: Store
    model: LLMEngine
    grader: LLMEngine  # grades open answers
    settings: MedicationBenchSettings
    dataset: str = ""

    @property
    def job_key(self) -> str:
        s = self.settings
        return sha256_of({
            "kind": "bench-medication", "dataset": self.dataset, "model": [self.model.model,
                                                                         self.model.request_params()],
            "grader": self.grader.model, "ask_confidence": s.ask_confidence, "seed": s.seed,
            "abstain": list(s.abstain_phrases),
            "prompts": [prompt_hash(MedicationAnswerer.prompt), prompt_hash(OpenAnswerGrader.prompt)],
        })[:32]


class MedicationState(TypedDict, total=False):
    run_id: str
    item_id: int
    failures: Annotated[list[str], operator.add]
    outcome: str


def build_medication_bench_graph(deps: MedicationBenchDeps):
    store, settings = deps.store, deps.settings
    answerer = MedicationAnswerer(deps.model, settings.ask_confidence)
    grader = OpenAnswerGrader(deps.grader)

    async def answer_item(state: MedicationState) -> dict[str, Any]:
        item = item_payload(store, state["item_id"])
        ctx = CallContext(run_id=state["run_id"], item_id=state["item_id"])
        try:
            a = await answerer.answer(item, ctx, seed=settings.seed)
        except LLMCallFailed as exc:
            return {"failures": [f"answer: {exc.reason}"], "outcome": "failed: no answer"}
        abstained = is_abstention(a.answer, settings.abstain_phrases)
        calls, explanation = [a.call_id], None
        if abstained:
            correct = False
        elif item.get("options"):
            correct = a.answer == item["answer"]
        else:
            try:
                correct, explanation, grade_call = await grader.grade(item["question"], item["answer"], a.answer, ctx)
            except LLMCallFailed as exc:
                return {"failures": [f"grade: {exc.reason}"], "outcome": "failed: not graded"}
            calls.append(grade_call)
        store_result(store, state["run_id"], BENCH, state["item_id"], deps.model.model, {
            "task": item["task"], "format": "mc" if item.get("options") else "open", "answer": a.answer,
            "abstained": abstained, "correct": correct, "confidence": a.confidence, "grader_explanation": explanation,
        }, calls)
        return {"outcome": "abstained" if abstained else ("correct" if correct else "wrong")}

    g = StateGraph(MedicationState)
    g.add_node("answer_item", answer_item)
    g.add_edge(START, "answer_item")
    g.add_edge("answer_item", END)
    return g.compile()


async def run_medication_bench(
    deps: MedicationBenchDeps, records: list[dict[str, Any]], run_config: dict[str, Any], **run: Any,
) -> tuple[WorkflowReport, dict[str, Any] | None]:
    """Run the bench, then store and return the summary (None when no item has a result)."""
    def summarise(rows: list) -> dict[str, Any]:
        return {**medication_metrics([r.metrics for r in rows], deps.settings.ece_bins),
                "grader_model": deps.grader.model}

    return await run_bench(deps.store, BENCH, deps.job_key, build_medication_bench_graph(deps), records,
                           deps.dataset, run_config, {"model": deps.model, "grader": deps.grader}, deps.model.model,
                           summarise, **run)
