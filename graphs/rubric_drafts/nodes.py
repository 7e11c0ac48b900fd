"""The rubric-draft graph's nodes: draft a rubric (or find the instruction's current one), and review it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from langgraph.types import interrupt

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.prompts import prompt_hashes
from agents.roles import conversation_of
from agents.rubric import Origin
from agents.rubric_writer import PoolExample, RubricWriter
from graphs.rubric_drafts.configuration import RubricDraftsConfig
from graphs.rubric_drafts.review import ReviewDecision, Reviewer, apply_decision
from graphs.rubric_drafts.state import DraftState
from store import Store
from store import rubrics as rubric_store
from store.lookups import item_payload
from store.records import sha256_of


@dataclass
class RubricDraftDeps:
    store: Store
    writer: LLMEngine
    config: RubricDraftsConfig
    seed: int = 0
    dataset: str = ""
    reviewer: Reviewer | None = None  # needed with review = "inline"

    @property
    def review_inline(self) -> bool:
        return self.config.review == "inline"

    @property
    def job_key(self) -> str:
        c = self.config
        return sha256_of({"kind": "rubric-drafts", "dataset": self.dataset, "writer": self.writer.model,
                          "params": self.writer.request_params(temperature=c.temperature), "k": c.fewshot_k,
                          "seed": self.seed, "review_inline": self.review_inline,
                          "prompt": prompt_hashes(RubricWriter.prompt)})[:32]


class RubricDraftNodes:
    def __init__(self, deps: RubricDraftDeps | None):
        self.deps = deps

    @cached_property
    def writer(self) -> RubricWriter:
        c = self.deps.config
        return RubricWriter(self.deps.writer, c.fewshot_k, c.temperature, c.prompt_language)

    async def draft(self, state: DraftState) -> dict[str, Any]:
        """Reuse the instruction's current rubric, or draft one with pool examples and past rejections."""
        d = self.deps
        payload = item_payload(d.store, state["item_id"])
        conversation = conversation_of(payload)
        ihash = rubric_store.instruction_hash(conversation)
        with d.store.session() as s:
            current = rubric_store.current_rubric(s, ihash)
            if current is not None:
                return {"rubric_id": current.id, "status": current.status,
                        "outcome": f"{current.status}: rubric already in the store"}
            pool = [PoolExample(r.id, r.instruction, r.rubric, r.origin)
                    for r in rubric_store.pool(s, d.config.pool_scan_limit) if r.instruction_hash != ihash]
            rejected = rubric_store.rejections(s, ihash)
        try:
            drafted = await self.writer.draft(conversation, pool, CallContext(run_id=state["run_id"],
                                                                              item_id=state["item_id"]),
                                              reference=payload.get("reference"), rejected=[r for _, r in rejected],
                                              seed=d.seed + len(rejected), lang=payload.get("lang"))
        except LLMCallFailed as exc:
            return {"failures": [f"draft: {exc.reason}"], "outcome": "draft failed"}
        with d.store.session() as s:
            rid = rubric_store.add_rubric(
                s, instruction=conversation, rubric=drafted.rubric.model_dump(mode="json"),
                origin=Origin.GENERATED.value, status=rubric_store.PENDING, in_pool=False,
                reference=payload.get("reference"), run_id=state["run_id"], item_id=state["item_id"],
                llm_call_id=drafted.call_id, writer_model=d.writer.model, language=payload.get("lang"))
            status = rubric_store.rubric_by_id(s, rid).status
        if status == rubric_store.REJECTED:
            return {"rubric_id": rid, "status": status, "outcome": "draft failed",
                    "failures": [f"draft: the writer repeated rejected rubric {rid}; change the seed or the writer"]}
        return {"rubric_id": rid, "status": status, "outcome": "pending: drafted"}

    def review(self, state: DraftState) -> dict[str, Any]:
        """Pause until a reviewer decides; the interrupt carries only the rubric's id."""
        answer = interrupt({"rubric_id": state["rubric_id"], "item_id": state["item_id"]})
        done = apply_decision(self.deps.store, state["rubric_id"], ReviewDecision.model_validate(answer))
        return {"rubric_id": done.rubric_id, "status": done.status, "outcome": f"{done.status}: reviewed"}
