"""``carealign factbench build``: grow a MedFact-style benchmark from correct medical texts.

    START -> inject (x chosen error types, fan-out: injector call, then span verification)
          -> collect -> filter (x verified variants, fan-out: every criterion x every judge) -> END

Storage (no new tables; see README "Building a fact-check benchmark"):
- every injection attempt: a ``bench_results`` row, bench ``factbench_inject``, key ``ITEM:INDEX``,
  metrics ``{status: verified|rejected, reason, error_type, round, injection{...}, candidate_id}``,
  ``llm_call_ids`` = the injector call; a rejected attempt is only this row, never a candidate;
- a verified variant: a ``candidates`` row of the source item (text = the erroneous text, model =
  the injector), with a ``span_verified`` judgment (met true, judge_model ``code:span-check``,
  details ``{injection: {sentence_id, original, replacement, start, end, variant_start,
  variant_end, correction, rationale, model_correction}, error_type}``);
- each filter verdict: a judgment (criterion = criterion id, kind ``factbench_filter``, met = pass,
  reason, judge_model, the judge's call, details ``{round, criterion_id, judge, examples}``);
- the panel's decision per round: a judgment (criterion ``panel@rK``, kind ``factbench_decision``,
  met = accepted, llm_call_id = the injector call, details ``{round, passed{criterion: bool}, vote}``).
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from agents.engine import CallContext, LLMEngine
from agents.error_injector import ErrorInjector, ErrorType, Rejected, build_variant
from agents.errors import LLMCallFailed
from agents.filter_panel import Criterion, Example, FilterPanel, accept, criterion_passes
from agents.prompts import prompt_hash
from agents.rubric_writer import similarity
from benchmarks.factcheck_data import FactCheckItem, load_dataset
from graphs.candidates import item_payload
from graphs.inputs import InputError
from graphs.runner import WorkflowReport, run_workflow
from store import Store, insert_ignore
from store.models import BenchResult
from store.records import add_candidate, add_judgments, sha256_of

INJECT_BENCH = "factbench_inject"
SPAN_CRITERION = "span_verified"
FILTER_KIND, DECISION_KIND, SPAN_KIND = "factbench_filter", "factbench_decision", "factbench_span"


def decision_criterion(round_: int) -> str:
    return f"panel@r{round_}"


# -- sources --------------------------------------------------------------------------------------
def corrected(item: FactCheckItem) -> FactCheckItem | None:
    """The correct text behind an error item (its located error replaced by the correction), or
    None when the item does not say exactly where and what the correction is."""
    if item.label == "correct":
        return item
    if item.error_start is None or item.error_end is None or not item.correction or item.error_span is None:
        return None
    text = item.text[:item.error_start] + item.correction + item.text[item.error_end:]
    sentences = list(item.sentences)
    sid = item.error_sentence_id
    if sid is not None and item.error_span in sentences[sid]:
        sentences[sid] = sentences[sid].replace(item.error_span, item.correction, 1)
    else:
        sentences = None
    return FactCheckItem.model_validate({
        "id": f"{item.id}-corrected", "text": text, "label": "correct", "sentences": sentences,
        "specialty": item.specialty, "writing_style": item.writing_style, "lang": item.lang,
        "source": item.source})


def read_sources(paths: list[Path], mapping: dict[str, Any] | str | None,
                 error_types: list[ErrorType]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Correct texts from every file as store records (the payload a ``FactCheckItem`` dump), and
    counts of what was used. Every file is read and validated before anything is returned; a
    correct line that asks for an error type (its ``error_type``) must name a known one."""
    known = {t.name for t in error_types}
    records, counts = [], {"correct rows": 0, "corrected error rows": 0, "error rows without a correction": 0}
    for path in paths:
        for item in load_dataset(path, mapping):
            source = corrected(item)
            if source is None:
                counts["error rows without a correction"] += 1
                continue
            counts["correct rows" if item.label == "correct" else "corrected error rows"] += 1
            wanted = item.error_type if item.label == "correct" else None
            if wanted is not None and wanted not in known:
                line = (item.source or "").rpartition(":")[2]
                raise InputError(f"{path}:{line}: field 'error_type': unknown error type {wanted!r} "
                                 f"(known: {', '.join(sorted(known))})")
            payload = source.model_dump(mode="json", exclude_none=True, exclude={"id", "source"})
            if wanted is None:
                payload.pop("error_type", None)
            records.append({"payload": payload, "external_id": source.id, "source": source.source})
    return records, counts


def choose_types(item_id: int, requested: str | None, types: list[ErrorType], per_source: int,
                 choice: str) -> list[ErrorType]:
    """The error types to inject into one source: the one it asks for, every type (``all``), or
    ``per_source`` types taken round-robin from the item id (so consecutive sources rotate)."""
    by_name = {t.name: t for t in types}
    if requested is not None:
        return [by_name[requested]]
    if choice == "all":
        return list(types)
    return [types[(item_id * per_source + j) % len(types)] for j in range(min(per_source, len(types)))]


# -- the graph ------------------------------------------------------------------------------------
@dataclass
class FactbenchSettings:
    round: int = 1
    variants_per_source: int = 1
    type_choice: str = "round_robin"  # or 'all'
    seed: int = 0
    injector_temperature: float = 0.7
    diff_gap_chars: int = 6  # unchanged characters that separate two edits in the span check
    vote: str = "majority"  # per criterion, over its judges: majority | all | any
    min_criteria: int | None = None  # criteria that must pass; None = all of them
    fewshot_k: int = 2  # expert-corrected examples per criterion prompt


@dataclass
class FactbenchDeps:
    store: Store
    injector: LLMEngine
    judges: list[LLMEngine]
    error_types: list[ErrorType]
    criteria: list[Criterion]
    settings: FactbenchSettings
    dataset: str = ""
    examples: dict[str, list[Example]] = field(default_factory=dict)  # criterion id -> expert examples

    @property
    def job_key(self) -> str:
        return sha256_of({
            "kind": "factbench", "dataset": self.dataset, "injector": self.injector.model,
            "injector_params": self.injector.request_params(), "judges": [j.model for j in self.judges],
            "types": [t.__dict__ for t in self.error_types], "criteria": [c.__dict__ for c in self.criteria],
            "settings": self.settings.__dict__, "prompts": [prompt_hash(ErrorInjector.prompt),
                                                            prompt_hash(FilterPanel.prompt)],
            "examples": {k: [e.__dict__ for e in v] for k, v in sorted(self.examples.items())},
        })[:32]


class BuildState(TypedDict, total=False):
    run_id: str
    item_id: int
    variants: Annotated[list[dict[str, Any]], operator.add]  # ids and status, not text
    decisions: Annotated[list[dict[str, Any]], operator.add]
    failures: Annotated[list[str], operator.add]
    outcome: str


class InjectTask(TypedDict):
    run_id: str
    item_id: int
    index: int
    error_type: str


class FilterTask(TypedDict):
    run_id: str
    item_id: int
    variant: dict[str, Any]


def build_factbench_graph(deps: FactbenchDeps):
    store, settings = deps.store, deps.settings
    injector = ErrorInjector(deps.injector, settings.injector_temperature)
    panel = FilterPanel(deps.judges, deps.criteria)
    types = {t.name: t for t in deps.error_types}

    def record_attempt(task: InjectTask, call_id: int | None, metrics: dict[str, Any]) -> None:
        with store.session() as s:
            insert_ignore(s, BenchResult, [{
                "run_id": task["run_id"], "bench": INJECT_BENCH, "result_key": f"{task['item_id']}:{task['index']}",
                "item_id": task["item_id"], "model": deps.injector.model,
                "metrics": {"error_type": task["error_type"], "round": settings.round, **metrics},
                "llm_call_ids": [call_id] if call_id is not None else []}], ["run_id", "bench", "result_key"])

    def fan_out_inject(state: BuildState) -> list[Send]:
        payload = item_payload(store, state["item_id"])
        chosen = choose_types(state["item_id"], payload.get("error_type"), deps.error_types,
                              settings.variants_per_source, settings.type_choice)
        return [Send("inject", InjectTask(run_id=state["run_id"], item_id=state["item_id"], index=i,
                                          error_type=t.name)) for i, t in enumerate(chosen)]

    async def inject(task: InjectTask) -> dict[str, Any]:
        payload = item_payload(store, task["item_id"])
        where = f"inject[{task['error_type']}]"
        try:
            reply = await injector.inject(payload["sentences"], types[task["error_type"]],
                                          CallContext(run_id=task["run_id"], item_id=task["item_id"]),
                                          seed=settings.seed + task["index"])
        except LLMCallFailed as exc:
            return {"failures": [f"{where}: {exc.reason}"]}
        claimed = {"sentence_id": reply.sentence_id, "original": reply.original, "replacement": reply.replacement,
                   "model_correction": reply.correction, "rationale": reply.rationale}
        try:
            v = build_variant(payload["text"], payload["sentences"], reply, settings.diff_gap_chars)
        except Rejected as exc:
            record_attempt(task, reply.call_id, {"status": "rejected", "reason": str(exc), "injection": claimed})
            return {"variants": [{"status": "rejected", "reason": str(exc), "error_type": task["error_type"]}]}
        details = {"injection": v.details(), "error_type": task["error_type"], "sentences": v.sentences}
        with store.session() as s:
            cid = add_candidate(s, run_id=task["run_id"], item_id=task["item_id"], llm_call_id=reply.call_id,
                                choice_index=0, sample_index=task["index"], model=deps.injector.model, text=v.text)
            add_judgments(s, [{"run_id": task["run_id"], "candidate_id": cid, "llm_call_id": reply.call_id,
                               "criterion": SPAN_CRITERION, "criterion_kind": SPAN_KIND, "met": True,
                               "reason": "one contiguous edit inside the claimed span", "details": details,
                               "judge_model": "code:span-check"}])
        record_attempt(task, reply.call_id, {"status": "verified", "reason": None, "injection": v.details(),
                                             "candidate_id": cid})
        return {"variants": [{"status": "verified", "candidate_id": cid, "call_id": reply.call_id,
                              "error_type": task["error_type"], **v.details(), "text": v.text}]}

    def fan_out_filter(state: BuildState) -> list[Send] | str:
        verified = [v for v in state.get("variants", []) if v["status"] == "verified"]
        if not verified:
            return "finish"
        return [Send("filter", FilterTask(run_id=state["run_id"], item_id=state["item_id"], variant=v))
                for v in verified]

    def examples_for(criterion: str, text: str) -> list[Example]:
        pool = [e for e in deps.examples.get(criterion, []) if e.text != text]  # never its own answer key
        return sorted(pool, key=lambda e: -similarity(text, e.text))[:settings.fewshot_k]

    async def filter_variant(task: FilterTask) -> dict[str, Any]:
        v, source = task["variant"], item_payload(store, task["item_id"])["text"]
        ctx = CallContext(run_id=task["run_id"], item_id=task["item_id"])
        jobs = [(c, j, examples_for(c.id, v["text"])) for c in deps.criteria for j in range(len(deps.judges))]
        results = await asyncio.gather(*[
            panel.judge(c, j, source=source, variant=v, error_type=types[v["error_type"]], examples=ex, ctx=ctx,
                        seed=settings.seed + 1000 * settings.round + j) for c, j, ex in jobs],
            return_exceptions=True)
        failures, rows, by_criterion = [], [], {c.id: [] for c in deps.criteria}
        for (c, j, ex), res in zip(jobs, results, strict=True):
            if isinstance(res, LLMCallFailed):
                failures.append(f"filter[{c.id}, judge {j}]: {res.reason}")
                continue
            if isinstance(res, BaseException):
                raise res
            by_criterion[c.id].append(res.passed)
            rows.append({"run_id": task["run_id"], "candidate_id": v["candidate_id"], "llm_call_id": res.call_id,
                         "criterion": c.id, "criterion_kind": FILTER_KIND, "met": res.passed, "reason": res.reason,
                         "judge_model": res.model, "details": {"round": settings.round, "criterion_id": c.id,
                                                               "judge": j, "examples": len(ex)}})
        with store.session() as s:
            ids = add_judgments(s, rows)
            if failures:  # no decision on part of the panel: the next run of the job asks the failed judges again
                return {"failures": failures}
            passed = {c: criterion_passes(vs, settings.vote) for c, vs in by_criterion.items()}
            accepted = accept(passed, settings.min_criteria)
            failed = [c for c, ok in passed.items() if not ok]
            add_judgments(s, [{"run_id": task["run_id"], "candidate_id": v["candidate_id"],
                               "llm_call_id": v["call_id"], "criterion": decision_criterion(settings.round),
                               "criterion_kind": DECISION_KIND, "met": accepted,
                               "reason": "failed: " + ", ".join(failed) if failed else "every criterion passed",
                               "judge_model": ",".join(j.model for j in deps.judges),
                               "details": {"round": settings.round, "passed": passed, "vote": settings.vote,
                                           "min_criteria": settings.min_criteria, "judgment_ids": ids}}])
        return {"failures": failures, "decisions": [{"candidate_id": v["candidate_id"], "accepted": accepted}]}

    def collect(state: BuildState) -> dict[str, Any]:
        return {}

    def finish(state: BuildState) -> dict[str, Any]:
        variants, decisions = state.get("variants", []), state.get("decisions", [])
        acc = sum(d["accepted"] for d in decisions)
        rejected = sum(v["status"] == "rejected" for v in variants)
        return {"outcome": f"built: {acc} accepted, {len(decisions) - acc} rejected by the panel, "
                           f"{rejected} rejected at span check"}

    g = StateGraph(BuildState)
    g.add_node("inject", inject)
    g.add_node("collect", collect)
    g.add_node("filter", filter_variant)
    g.add_node("finish", finish)
    g.add_conditional_edges(START, fan_out_inject, ["inject"])
    g.add_edge("inject", "collect")
    g.add_conditional_edges("collect", fan_out_filter, ["filter", "finish"])
    g.add_edge("filter", "finish")
    g.add_edge("finish", END)
    return g.compile()


def build_outcome(state: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """An item is done when every variant was decided or recorded as rejected (an LLM failure
    leaves it failed, so the next run of the job retries it)."""
    failures = list(state.get("failures", []))
    return not failures, state.get("outcome", "no outcome"), failures


async def run_factbench(deps: FactbenchDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
                        item_concurrency: int = 8, lease_seconds: float = 600.0, redo: bool = False,
                        on_item: Callable[[Any], None] | None = None) -> WorkflowReport:
    engines = {"injector": deps.injector, **{f"judge_{i + 1}": j for i, j in enumerate(deps.judges)}}
    return await run_workflow(deps.store, "factbench", deps.job_key, build_factbench_graph(deps), records,
                              deps.dataset, {**run_config, "round": deps.settings.round}, build_outcome, engines,
                              item_concurrency=item_concurrency, lease_seconds=lease_seconds, redo=redo,
                              on_item=on_item)
