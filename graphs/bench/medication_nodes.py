"""The medication bench's node: answer one item (an option letter, free text, or "I don't know", with
a stated confidence when the settings ask for one) and grade an open answer against the reference.

Per-item results go to ``bench_results`` (bench ``medication``); the summary (accuracy per task,
abstention, accuracy when answering, over-confidence, ECE) comes from
``benchmarks.datasets.medication``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.medication_roles import MedicationAnswerer, OpenAnswerGrader
from agents.prompts import prompt_hashes
from benchmarks.datasets.medication import is_abstention, medication_metrics
from graphs.bench.configuration import BenchConfig
from graphs.bench.results import BenchJob
from graphs.bench.state import MedicationBenchState
from store import Store
from store.bench import store_result
from store.lookups import item_payload
from store.records import sha256_of

if TYPE_CHECKING:
    from store.models import BenchResult

BENCH = "medication"


@dataclass
class MedicationBenchDeps:
    """The store, the answering model, the grader of open answers, the ``[bench]`` settings, the
    seed and the dataset name."""

    store: Store
    model: LLMEngine
    grader: LLMEngine
    config: BenchConfig
    seed: int = 0
    dataset: str = ""

    @property
    def job_key(self) -> str:
        return sha256_of({
            "kind": "bench-medication", "dataset": self.dataset, "model": [self.model.model,
                                                                         self.model.request_params()],
            "grader": self.grader.model, "ask_confidence": self.config.ask_confidence, "seed": self.seed,
            "abstain": list(self.config.abstain_phrases),
            "prompts": [prompt_hashes(MedicationAnswerer.prompt), prompt_hashes(OpenAnswerGrader.prompt)],
        })[:32]

    @property
    def job(self) -> BenchJob:
        return BenchJob(self.store, BENCH, self.job_key, self.dataset, self.model.model, self.config)


class MedicationNodes:
    """Node functions bound to their dependencies (read only when a node runs)."""

    def __init__(self, deps: MedicationBenchDeps | None):
        self.deps = deps

    @cached_property
    def answerer(self) -> MedicationAnswerer:
        return MedicationAnswerer(self.deps.model, self.deps.config.ask_confidence, self.deps.config.prompt_language)

    @cached_property
    def grader(self) -> OpenAnswerGrader:
        return OpenAnswerGrader(self.deps.grader, self.deps.config.prompt_language)

    async def answer_item(self, state: MedicationBenchState) -> dict[str, Any]:
        d = self.deps
        item = item_payload(d.store, state["item_id"])
        ctx = CallContext(run_id=state["run_id"], item_id=state["item_id"])
        try:
            a = await self.answerer.answer(item, ctx, seed=d.seed)
        except LLMCallFailed as exc:
            return {"failures": [f"answer: {exc.reason}"], "outcome": "failed: no answer"}
        abstained = is_abstention(a.answer, d.config.abstain_phrases)
        calls, explanation = [a.call_id], None
        if abstained:
            correct = False
        elif item.get("options"):
            correct = a.answer == item["answer"]
        else:
            try:
                correct, explanation, grade_call = await self.grader.grade(item["question"], item["answer"],
                                                                           a.answer, ctx, item.get("lang"))
            except LLMCallFailed as exc:
                return {"failures": [f"grade: {exc.reason}"], "outcome": "failed: not graded"}
            calls.append(grade_call)
        store_result(d.store, state["run_id"], BENCH, state["item_id"], d.model.model, {
            "task": item["task"], "format": "mc" if item.get("options") else "open", "answer": a.answer,
            "abstained": abstained, "correct": correct, "confidence": a.confidence, "grader_explanation": explanation,
        }, calls)
        return {"outcome": "abstained" if abstained else ("correct" if correct else "wrong")}

    def summarise(self, rows: list[BenchResult]) -> dict[str, Any]:
        d = self.deps
        return {**medication_metrics([r.metrics for r in rows], d.config.ece_bins), "grader_model": d.grader.model}
