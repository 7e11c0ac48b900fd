"""The medication item builder's nodes: write one item from a label section and check it; tally.

For every label and every ChiDrug task whose label section is present, the writer model drafts an
item (a question, distractors for multiple choice, the reference answer and a quote of the label
text behind it). An item is rejected, with its reason, when the quote is not in the label section
or when the checker (a separate call, ideally another model) finds the answer unsupported by the
label. Accepted and rejected items are stored in ``bench_results`` (bench ``medication_build``, one
row per label, task and format), so every item traces back to the label, run and calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.medication_roles import LabelChecker, MedicationItemWriter
from agents.prompts import prompt_hashes
from benchmarks.datasets.medication import TASK_SECTIONS, DrugLabel, normalise_words
from graphs.bench.configuration import BenchConfig
from graphs.bench.results import BenchJob
from graphs.bench.state import MedicationBuildState, WriteTask
from store import Store
from store.bench import item_key, store_result
from store.lookups import item_payload
from store.records import sha256_of

if TYPE_CHECKING:
    from store.models import BenchResult

BENCH = "medication_build"


@dataclass
class MedicationBuildDeps:
    """The store, the item writer, the checker, the ``[bench]`` settings, the seed and the dataset."""

    store: Store
    writer: LLMEngine
    checker: LLMEngine
    config: BenchConfig
    seed: int = 0
    dataset: str = ""

    @property
    def job_key(self) -> str:
        c = self.config
        settings = {"formats": list(c.build_formats), "n_options": c.build_n_options, "tasks": list(c.build_tasks),
                    "temperature": c.build_temperature, "seed": self.seed}  # the old settings object's fields
        return sha256_of({
            "kind": "bench-medication-build", "dataset": self.dataset, "settings": settings,
            "writer": [self.writer.model, self.writer.request_params()], "checker": self.checker.model,
            "prompts": [prompt_hashes(MedicationItemWriter.prompt), prompt_hashes(LabelChecker.prompt)],
        })[:32]

    @property
    def job(self) -> BenchJob:
        return BenchJob(self.store, BENCH, self.job_key, self.dataset, self.writer.model, self.config,
                        kind="bench-medication-build")


def label_records(labels: list[DrugLabel], source: str) -> list[dict[str, Any]]:
    """One item per label; its payload names the other drugs (distractors for drug recommendation)."""
    names = [lab.drug for lab in labels]
    return [{"payload": {**lab.model_dump(mode="json"), "other_drugs": [n for n in names if n != lab.drug]},
             "external_id": lab.id, "source": f"{source}: label {n}"} for n, lab in enumerate(labels)]


class MedicationBuildNodes:
    """Node functions bound to their dependencies (read only when a node runs)."""

    def __init__(self, deps: MedicationBuildDeps | None):
        self.deps = deps

    @cached_property
    def writer(self) -> MedicationItemWriter:
        return MedicationItemWriter(self.deps.writer, self.deps.config.build_temperature,
                                    self.deps.config.prompt_language)

    @cached_property
    def checker(self) -> LabelChecker:
        return LabelChecker(self.deps.checker, self.deps.config.prompt_language)

    def write_tasks(self, state: MedicationBuildState) -> list[WriteTask]:
        """One task per configured ChiDrug task whose label section is present, per format."""
        c = self.deps.config
        sections = item_payload(self.deps.store, state["item_id"])["sections"]
        return [WriteTask(run_id=state["run_id"], item_id=state["item_id"], task=t, format=f)
                for t in c.build_tasks if TASK_SECTIONS[t] in sections for f in c.build_formats]

    async def write_item(self, task: WriteTask) -> dict[str, Any]:
        d = self.deps
        label = item_payload(d.store, task["item_id"])
        section = TASK_SECTIONS[task["task"]]
        text = label["sections"][section]
        ctx = CallContext(run_id=task["run_id"], item_id=task["item_id"])
        n_options = d.config.build_n_options if task["format"] == "mc" else 0
        where = f"{task['task']}/{task['format']}"
        try:
            w = await self.writer.write(label["drug"], task["task"], section, text, label["other_drugs"], n_options,
                                        ctx, seed=d.seed, lang=label.get("lang"))
        except LLMCallFailed as exc:
            return {"failures": [f"write {where}: {exc.reason}"]}
        calls = [w.call_id]
        if normalise_words(w.evidence) not in normalise_words(text):
            supported, reason = False, "the evidence quote is not in the label section"
        else:
            try:
                supported, reason, check_call = await self.checker.check(label["drug"], section, text, w, ctx,
                                                                         label.get("lang"))
            except LLMCallFailed as exc:
                return {"failures": [f"check {where}: {exc.reason}"]}
            calls.append(check_call)
        item = {"id": f"{label['id']}-{task['task']}-{task['format']}", "task": task["task"], **w.as_item(),
                "drug": label["drug"], "lang": label.get("lang"), "evidence": w.evidence}
        status = "accepted" if supported else "rejected"
        store_result(d.store, task["run_id"], BENCH, task["item_id"], d.writer.model, {
            "status": status, "reason": reason, "task": task["task"], "format": task["format"],
            "label_id": label["id"], "drug": label["drug"], "item": item, "checker_model": d.checker.model,
        }, calls, item_key(task["item_id"], f"{task['task']}:{task['format']}"))
        return {"built": [{"task": task["task"], "format": task["format"], "status": status}]}

    def tally(self, state: MedicationBuildState) -> dict[str, Any]:
        built = state.get("built", [])
        accepted = sum(1 for b in built if b["status"] == "accepted")
        return {"outcome": f"{accepted} accepted, {len(built) - accepted} rejected"}


def build_summary(deps: MedicationBuildDeps, n_labels: int, rows: list[BenchResult]
                  ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The summary (counts per task), the accepted items (bench format) and the rejections (each
    with its item, reason and result id), from the job's newest rows."""
    accepted = [r.metrics["item"] for r in rows if r.metrics["status"] == "accepted"]
    rejected = [{"result_id": r.id, "reason": r.metrics["reason"], "item": r.metrics["item"]}
                for r in rows if r.metrics["status"] != "accepted"]
    per_task: dict[str, dict[str, int]] = {}
    for r in rows:
        counts = per_task.setdefault(r.metrics["task"], {"accepted": 0, "rejected": 0})
        counts[r.metrics["status"]] += 1
    summary = {"bench": BENCH, "model": deps.writer.model, "checker_model": deps.checker.model,
               "dataset": deps.dataset, "labels": n_labels, "accepted": len(accepted),
               "rejected": len(rejected), "per_task": per_task}
    return summary, accepted, rejected
