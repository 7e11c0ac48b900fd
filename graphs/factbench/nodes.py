"""The factbench build graph's nodes: inject one typed error and check its span, have the panel
judge a verified variant, sum up the source.

Each node writes what it made before returning (``store.factbench`` names the rows), so an
interrupted run loses nothing and a re-run is answered from the request cache.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from agents.engine import CallContext, LLMEngine
from agents.error_injector import ErrorInjector, ErrorType, Rejected, build_variant
from agents.errors import LLMCallFailed
from agents.filter_panel import Criterion, Example, FilterPanel, accept, criterion_passes
from agents.prompts import prompt_hashes
from agents.text_similarity import similarity
from graphs.factbench.configuration import FactbenchConfig
from graphs.factbench.state import BuildState, FilterTask, InjectTask
from store import Store
from store.factbench import DECISION_KIND, FILTER_KIND, SPAN_CRITERION, SPAN_KIND, record_attempt
from store.lookups import candidate_text, item_payload
from store.records import add_candidate, add_judgments, sha256_of


def decision_criterion(round_: int) -> str:
    return f"panel@r{round_}"


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


@dataclass
class FactbenchDeps:
    """What a build round runs against: the store, the injector, the panel's judges, the taxonomy,
    the settings, the seed, and the expert examples of earlier rounds."""

    store: Store
    injector: LLMEngine
    judges: list[LLMEngine]
    error_types: list[ErrorType]
    criteria: list[Criterion]
    config: FactbenchConfig
    seed: int = 0
    dataset: str = ""
    examples: dict[str, list[Example]] = field(default_factory=dict)  # criterion id -> expert examples

    @property
    def job_key(self) -> str:
        """What shapes this job's output; the same key means the same job (resume, share, skip)."""
        return sha256_of({
            "kind": "factbench", "dataset": self.dataset, "injector": self.injector.model,
            "injector_params": self.injector.request_params(), "judges": [j.model for j in self.judges],
            "types": [t.__dict__ for t in self.error_types], "criteria": [c.__dict__ for c in self.criteria],
            "settings": self.config.build_shaping(self.seed), "prompts": [prompt_hashes(ErrorInjector.prompt),
                                                                          prompt_hashes(FilterPanel.prompt)],
            "examples": {k: [e.__dict__ for e in v] for k, v in sorted(self.examples.items())},
        })[:32]


class FactbenchNodes:
    """Node functions bound to their dependencies (read only when a node runs, so the graph can be
    built without them to be drawn)."""

    def __init__(self, deps: FactbenchDeps | None):
        self.deps = deps

    @cached_property
    def injector(self) -> ErrorInjector:
        c = self.deps.config
        return ErrorInjector(self.deps.injector, c.injector_temperature, c.prompt_language)

    @cached_property
    def panel(self) -> FilterPanel:
        return FilterPanel(self.deps.judges, self.deps.criteria, self.deps.config.prompt_language)

    @cached_property
    def types(self) -> dict[str, ErrorType]:
        return {t.name: t for t in self.deps.error_types}

    def inject_tasks(self, state: BuildState) -> list[InjectTask]:
        d = self.deps
        chosen = choose_types(state["item_id"], item_payload(d.store, state["item_id"]).get("error_type"),
                              d.error_types, d.config.variants_per_source, d.config.type_choice)
        return [InjectTask(run_id=state["run_id"], item_id=state["item_id"], index=i, error_type=t.name)
                for i, t in enumerate(chosen)]

    def record_attempt(self, task: InjectTask, call_id: int | None, metrics: dict[str, Any]) -> None:
        d = self.deps
        record_attempt(d.store, {
            "run_id": task["run_id"], "result_key": f"{task['item_id']}:{task['index']}", "item_id": task["item_id"],
            "model": d.injector.model, "llm_call_ids": [call_id] if call_id is not None else [],
            "metrics": {"error_type": task["error_type"], "round": d.config.round, **metrics}})

    def examples_for(self, criterion: str, text: str) -> list[Example]:
        """The expert examples most similar to ``text`` (never its own answer key)."""
        pool = [e for e in self.deps.examples.get(criterion, []) if e.text != text]
        return sorted(pool, key=lambda e: -similarity(text, e.text))[:self.deps.config.fewshot_k]

    # -- nodes -----------------------------------------------------------------------------------
    async def inject(self, task: InjectTask) -> dict[str, Any]:
        """The injector names one edit; the code builds the variant and checks its span. A failed
        check is recorded with its reason and never becomes a candidate."""
        d = self.deps
        payload = item_payload(d.store, task["item_id"])
        try:
            reply = await self.injector.inject(payload["sentences"], self.types[task["error_type"]],
                                               CallContext(run_id=task["run_id"], item_id=task["item_id"]),
                                               seed=d.seed + task["index"], lang=payload.get("lang"))
        except LLMCallFailed as exc:
            return {"failures": [f"inject[{task['error_type']}]: {exc.reason}"]}
        claimed = {"sentence_id": reply.sentence_id, "original": reply.original, "replacement": reply.replacement,
                   "model_correction": reply.correction, "rationale": reply.rationale}
        try:
            v = build_variant(payload["text"], payload["sentences"], reply, d.config.diff_gap_chars)
        except Rejected as exc:
            self.record_attempt(task, reply.call_id, {"status": "rejected", "reason": str(exc), "injection": claimed})
            return {"variants": [{"status": "rejected", "reason": str(exc), "error_type": task["error_type"]}]}
        details = {"injection": v.details(), "error_type": task["error_type"], "sentences": v.sentences}
        with d.store.session() as s:
            cid = add_candidate(s, run_id=task["run_id"], item_id=task["item_id"], llm_call_id=reply.call_id,
                                choice_index=0, sample_index=task["index"], model=d.injector.model, text=v.text)
            add_judgments(s, [{"run_id": task["run_id"], "candidate_id": cid, "llm_call_id": reply.call_id,
                               "criterion": SPAN_CRITERION, "criterion_kind": SPAN_KIND, "met": True,
                               "reason": "one contiguous edit inside the claimed span", "details": details,
                               "judge_model": "code:span-check"}])
        self.record_attempt(task, reply.call_id, {"status": "verified", "reason": None, "injection": v.details(),
                                                  "candidate_id": cid})
        return {"variants": [{"status": "verified", "candidate_id": cid, "call_id": reply.call_id,
                              "error_type": task["error_type"], **v.details()}]}

    def collect(self, state: BuildState) -> dict[str, Any]:
        """Waits for every injection of the source before the panel is asked."""
        return {}

    async def filter_variant(self, task: FilterTask) -> dict[str, Any]:
        """Every criterion asked of every judge; the decision is stored only when all answered (an
        LLM failure leaves the variant undecided, so the next run asks the failed judges again)."""
        d, r = self.deps, self.deps.config.round
        v = {**task["variant"], "text": candidate_text(d.store, task["variant"]["candidate_id"])}
        source_item = item_payload(d.store, task["item_id"])
        source, lang = source_item["text"], source_item.get("lang")
        ctx = CallContext(run_id=task["run_id"], item_id=task["item_id"])
        jobs = [(c, j, self.examples_for(c.id, v["text"])) for c in d.criteria for j in range(len(d.judges))]
        results = await asyncio.gather(*[
            self.panel.judge(c, j, source=source, variant=v, error_type=self.types[v["error_type"]], examples=ex,
                             ctx=ctx, seed=d.seed + 1000 * r + j, lang=lang) for c, j, ex in jobs],
            return_exceptions=True)
        failures, rows, by_criterion = [], [], {c.id: [] for c in d.criteria}
        for (c, j, ex), res in zip(jobs, results, strict=True):
            if isinstance(res, LLMCallFailed):
                failures.append(f"filter[{c.id}, judge {j}]: {res.reason}")
                continue
            if isinstance(res, BaseException):
                raise res
            by_criterion[c.id].append(res.passed)
            rows.append({"run_id": task["run_id"], "candidate_id": v["candidate_id"], "llm_call_id": res.call_id,
                         "criterion": c.id, "criterion_kind": FILTER_KIND, "met": res.passed, "reason": res.reason,
                         "judge_model": res.model, "details": {"round": r, "criterion_id": c.id, "judge": j,
                                                               "examples": len(ex)}})
        with d.store.session() as s:
            ids = add_judgments(s, rows)
            if failures:
                return {"failures": failures}
            passed = {c: criterion_passes(vs, d.config.vote) for c, vs in by_criterion.items()}
            accepted = accept(passed, d.config.min_criteria)
            failed = [c for c, ok in passed.items() if not ok]
            add_judgments(s, [{"run_id": task["run_id"], "candidate_id": v["candidate_id"],
                               "llm_call_id": v["call_id"], "criterion": decision_criterion(r),
                               "criterion_kind": DECISION_KIND, "met": accepted,
                               "reason": "failed: " + ", ".join(failed) if failed else "every criterion passed",
                               "judge_model": ",".join(j.model for j in d.judges),
                               "details": {"round": r, "passed": passed, "vote": d.config.vote,
                                           "min_criteria": d.config.min_criteria, "judgment_ids": ids}}])
        return {"failures": failures, "decisions": [{"candidate_id": v["candidate_id"], "accepted": accepted}]}

    def finish(self, state: BuildState) -> dict[str, Any]:
        variants, decisions = state.get("variants", []), state.get("decisions", [])
        acc = sum(d["accepted"] for d in decisions)
        rejected = sum(v["status"] == "rejected" for v in variants)
        return {"outcome": f"built: {acc} accepted, {len(decisions) - acc} rejected by the panel, "
                           f"{rejected} rejected at span check"}
