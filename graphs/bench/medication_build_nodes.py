"""``carealign bench medication build``: medication bench items from structured drug labels.

    START -> write_item (x task x format, fan-out) -> tally -> END

For every label and every ChiDrug task whose label section is present, the writer model drafts an
item (a question, distractors for multiple choice, the reference answer and a quote of the label
text behind it). An item is rejected, with its reason, when the quote is not in the label section
or when the checker (a separate call, ideally another model) finds the answer unsupported by the
label. Accepted and rejected items are stored in ``bench_results`` (bench ``medication_build``, one
row per label, task and format), so every item traces back to the label, run and calls.
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
from agents.medication_roles import LabelChecker, MedicationItemWriter
from agents.prompts import prompt_hash
from benchmarks.medication import TASK_SECTIONS, TASKS, DrugLabel, normalise_words
from graphs.bench_store import input_item_ids, item_key, job_results, store_result, store_summary
from graphs.candidates import item_payload
from graphs.runner import WorkflowReport, run_workflow
from store import Store
from store.records import sha256_of

BENCH = "medication_build"
FORMATS = ("mc", "open")


@dataclass
class MedicationBuildSettings:
    formats: tuple[str, ...] = ("mc",)
    n_options: int = 4  # ChiDrug's multiple-choice items: not published, a setting
    tasks: tuple[str, ...] = TASKS
    temperature: float = 0.7  # of the writer
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.formats or set(self.formats) - set(FORMATS):
            raise ValueError(f"formats must be a non-empty subset of {FORMATS} (got {self.formats})")
        if set(self.tasks) - set(TASKS) or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS} (got {self.tasks})")
        if not 2 <= self.n_options <= 26:
            raise ValueError("n_options must be from 2 to 26")


@dataclass
class MedicationBuildDeps:
    store: Store
    writer: LLMEngine
    checker: LLMEngine
    settings: MedicationBuildSettings
    dataset: str = ""

    @property
    def job_key(self) -> str:
        s = self.settings
        return sha256_of({
            "kind": "bench-medication-build", "dataset": self.dataset, "settings": s.__dict__,
            "writer": [self.writer.model, self.writer.request_params()], "checker": self.checker.model,
            "prompts": [prompt_hash(MedicationItemWriter.prompt), prompt_hash(LabelChecker.prompt)],
        })[:32]


def label_records(labels: list[DrugLabel], source: str) -> list[dict[str, Any]]:
    """One item per label; its payload names the other drugs (distractors for drug recommendation)."""
    names = [lab.drug for lab in labels]
    return [{"payload": {**lab.model_dump(mode="json"), "other_drugs": [n for n in names if n != lab.drug]},
             "external_id": lab.id, "source": f"{source}: label {n}"} for n, lab in enumerate(labels)]


class BuildState(TypedDict, total=False):
    run_id: str
    item_id: int
    built: Annotated[list[dict[str, Any]], operator.add]
    failures: Annotated[list[str], operator.add]
    outcome: str


class WriteTask(TypedDict):
    run_id: str
    item_id: int
    task: str
    format: str


def build_medication_build_graph(deps: MedicationBuildDeps):
    store, settings = deps.store, deps.settings
    writer = MedicationItemWriter(deps.writer, settings.temperature)
    checker = LabelChecker(deps.checker)

    def fan_out(state: BuildState) -> list[Send] | str:
        sections = item_payload(store, state["item_id"])["sections"]
        sends = [Send("write_item", WriteTask(run_id=state["run_id"], item_id=state["item_id"], task=t, format=f))
                 for t in settings.tasks if TASK_SECTIONS[t] in sections for f in settings.formats]
        return sends or "tally"

    async def write_item(task: WriteTask) -> dict[str, Any]:
        label = item_payload(store, task["item_id"])
        section = TASK_SECTIONS[task["task"]]
        text = label["sections"][section]
        ctx = CallContext(run_id=task["run_id"], item_id=task["item_id"])
        n_options = settings.n_options if task["format"] == "mc" else 0
        where = f"{task['task']}/{task['format']}"
        try:
            w = await writer.write(label["drug"], task["task"], section, text, label["other_drugs"], n_options, ctx,
                                   seed=settings.seed)
        except LLMCallFailed as exc:
            return {"failures": [f"write {where}: {exc.reason}"]}
        calls = [w.call_id]
        if normalise_words(w.evidence) not in normalise_words(text):
            supported, reason = False, "the evidence quote is not in the label section"
        else:
            try:
                supported, reason, check_call = await checker.check(label["drug"], section, text, w, ctx)
            except LLMCallFailed as exc:
                return {"failures": [f"check {where}: {exc.reason}"]}
            calls.append(check_call)
        item = {"id": f"{label['id']}-{task['task']}-{task['format']}", "task": task["task"], **w.as_item(),
                "drug": label["drug"], "lang": label.get("lang"), "evidence": w.evidence}
        status = "accepted" if supported else "rejected"
        store_result(store, task["run_id"], BENCH, task["item_id"], deps.writer.model, {
            "status": status, "reason": reason, "task": task["task"], "format": task["format"],
            "label_id": label["id"], "drug": label["drug"], "item": item, "checker_model": deps.checker.model,
        }, calls, item_key(task["item_id"], f"{task['task']}:{task['format']}"))
        return {"built": [{"task": task["task"], "format": task["format"], "status": status}]}

    def tally(state: BuildState) -> dict[str, Any]:
        built = state.get("built", [])
        accepted = sum(1 for b in built if b["status"] == "accepted")
        return {"outcome": f"{accepted} accepted, {len(built) - accepted} rejected"}

    g = StateGraph(BuildState)
    g.add_node("write_item", write_item)
    g.add_node("tally", tally)
    g.add_conditional_edges(START, fan_out, ["write_item", "tally"])
    g.add_edge("write_item", "tally")
    g.add_edge("tally", END)
    return g.compile()


def build_outcome(state: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """A label is done when no write or check call failed (rejections are results, not failures)."""
    failures = list(state.get("failures", []))
    return not failures, state.get("outcome", "no outcome"), failures


async def run_medication_build(
    deps: MedicationBuildDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
    item_concurrency: int = 4, lease_seconds: float = 600.0, redo: bool = False,
    on_item: Callable[[Any], None] | None = None,
) -> tuple[WorkflowReport, dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Build items; returns the report, the summary (stored), the accepted items (bench format) and
    the rejections (each with its item, reason and result id)."""
    report = await run_workflow(deps.store, "bench-medication-build", deps.job_key,
                                build_medication_build_graph(deps), records, deps.dataset,
                                {**run_config, "bench": BENCH}, build_outcome,
                                {"writer": deps.writer, "checker": deps.checker}, item_concurrency=item_concurrency,
                                lease_seconds=lease_seconds, redo=redo, on_item=on_item)
    rows = job_results(deps.store, BENCH, deps.job_key, input_item_ids(deps.store, deps.dataset, records))
    accepted = [r.metrics["item"] for r in rows if r.metrics["status"] == "accepted"]
    rejected = [{"result_id": r.id, "reason": r.metrics["reason"], "item": r.metrics["item"]}
                for r in rows if r.metrics["status"] != "accepted"]
    per_task: dict[str, dict[str, int]] = {}
    for r in rows:
        counts = per_task.setdefault(r.metrics["task"], {"accepted": 0, "rejected": 0})
        counts[r.metrics["status"]] += 1
    summary = {"bench": BENCH, "model": deps.writer.model, "checker_model": deps.checker.model,
               "dataset": deps.dataset, "labels": len(records), "accepted": len(accepted),
               "rejected": len(rejected), "per_task": per_task}
    store_summary(deps.store, report.run_id, BENCH, deps.writer.model, summary, [r.id for r in rows])
    return report, summary, accepted, rejected
