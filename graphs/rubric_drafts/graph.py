"""``carealign rubrics draft``: rubrics for instructions that have none, with a human in the loop.

    START -> draft -> (review: LangGraph interrupt, when reviewing inline) -> END

``draft`` reuses the instruction's current rubric when there is one (approved, or a draft still
waiting for review), and otherwise asks the rubric writer, with few-shot examples chosen from the
pool of approved rubrics and the reasons reviewers gave for rejecting earlier drafts. A new draft
is stored ``pending``. With inline review the graph then pauses (``interrupt``) with the rubric's id;
the caller shows it to a reviewer and resumes the graph with the decision. Without it, drafts wait
in the store for ``carealign rubrics review``; running the command again resumes where it stopped
(an item whose draft is pending pauses again; an item already decided is not redrafted).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from pydantic import BaseModel, ConfigDict, Field

from agents.engine import CallContext, LLMEngine
from agents.errors import LLMCallFailed
from agents.prompts import prompt_hash
from agents.roles import conversation_of
from agents.rubric import Origin, Rubric
from agents.rubric_writer import PoolExample, RubricWriter
from graphs.candidates import item_payload
from graphs.runner import WorkflowReport, run_workflow
from store import Store
from store import rubrics as rubric_store
from store.models import RubricRecord
from store.records import sha256_of

SEED_POOL = Path(__file__).resolve().parent.parent / "agents" / "rubrics" / "fewshot_seed.jsonl"


class ReviewDecision(BaseModel):
    """What a reviewer decided about one draft (``rubric`` only with ``edit``)."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "edit", "reject"]
    reason: str | None = None
    reviewer: str = Field(min_length=1)
    rubric: dict[str, Any] | None = None


# Returns the decision, or None to leave the draft pending (skipped, or the reviewer stopped).
Reviewer = Callable[[dict[str, Any]], Awaitable[ReviewDecision | None]]


def apply_decision(store: Store, rubric_id: int, decision: ReviewDecision) -> rubric_store.Decided:
    """Validate and record a decision. An edited rubric must be a valid rubric; its criteria that the
    reviewer changed or added are marked ``human_edited``, those kept as drafted stay ``generated``."""
    edited = None
    if decision.decision == "edit":
        if decision.rubric is None:
            raise ValueError("an 'edit' decision needs the edited rubric")
        with store.session() as s:
            draft = s.get(RubricRecord, rubric_id)
            before = {json.dumps(c, sort_keys=True) for c in (draft.rubric["criteria"] if draft else [])}
        parsed = Rubric.model_validate(decision.rubric)
        for c in parsed.criteria:
            if json.dumps(c.model_dump(mode="json"), sort_keys=True) not in before:
                c.origin = Origin.HUMAN_EDITED
        edited = parsed.model_dump(mode="json")
    with store.session() as s:
        return rubric_store.decide(s, rubric_id, decision.decision, decision.reviewer, decision.reason, edited)


def seed_pool(store: Store, path: Path = SEED_POOL) -> int:
    """Put the shipped example rubrics in the pool (once: the store's unique key makes it idempotent)."""
    from graphs.inputs import read_rubric_instructions

    return import_rubrics(store, read_rubric_instructions(path))


def import_rubrics(store: Store, records: list[dict[str, Any]]) -> int:
    """Approved dataset rubrics (records from ``read_rubric_instructions`` that carry a rubric) join
    the pool; returns how many records had one."""
    n = 0
    with store.session() as s:
        for rec in records:
            payload = rec["payload"]
            if "rubric" not in payload or payload.get("rubric_id") is not None:
                continue
            rubric_store.add_rubric(s, instruction=conversation_of(payload), rubric=payload["rubric"],
                                    origin=Origin.DATASET.value, status=rubric_store.APPROVED, in_pool=True,
                                    reference=payload.get("reference"), language=payload.get("lang"))
            n += 1
    return n


@dataclass
class RubricDraftSettings:
    fewshot_k: int = 3
    temperature: float = 0.2
    seed: int = 0
    review_inline: bool = False
    pool_scan_limit: int = 2000


@dataclass
class RubricDraftDeps:
    store: Store
    writer: LLMEngine
    settings: RubricDraftSettings
    dataset: str = ""
    reviewer: Reviewer | None = None  # needed with review_inline

    @property
    def job_key(self) -> str:
        s = self.settings
        return sha256_of({"kind": "rubric-drafts", "dataset": self.dataset, "writer": self.writer.model,
                          "params": self.writer.request_params(temperature=s.temperature), "k": s.fewshot_k,
                          "seed": s.seed, "review_inline": s.review_inline,
                          "prompt": prompt_hash(RubricWriter.prompt)})[:32]


class DraftState(TypedDict, total=False):
    run_id: str
    item_id: int
    rubric_id: int
    status: str
    outcome: str
    failures: list[str]


def build_rubric_draft_graph(deps: RubricDraftDeps):
    store, settings = deps.store, deps.settings
    writer = RubricWriter(deps.writer, settings.fewshot_k, settings.temperature)

    async def draft(state: DraftState) -> dict[str, Any]:
        payload = item_payload(store, state["item_id"])
        conversation = conversation_of(payload)
        ihash = rubric_store.instruction_hash(conversation)
        with store.session() as s:
            current = rubric_store.current_rubric(s, ihash)
            if current is not None:
                return {"rubric_id": current.id, "status": current.status,
                        "outcome": f"{current.status}: rubric already in the store"}
            pool = [PoolExample(r.id, r.instruction, r.rubric, r.origin)
                    for r in rubric_store.pool(s, settings.pool_scan_limit) if r.instruction_hash != ihash]
            rejected = rubric_store.rejections(s, ihash)
        try:
            d = await writer.draft(conversation, pool, CallContext(run_id=state["run_id"], item_id=state["item_id"]),
                                   reference=payload.get("reference"), rejected=[r for _, r in rejected],
                                   seed=settings.seed + len(rejected))
        except LLMCallFailed as exc:
            return {"failures": [f"draft: {exc.reason}"], "outcome": "draft failed"}
        with store.session() as s:
            rid = rubric_store.add_rubric(
                s, instruction=conversation, rubric=d.rubric.model_dump(mode="json"), origin=Origin.GENERATED.value,
                status=rubric_store.PENDING, in_pool=False, reference=payload.get("reference"),
                run_id=state["run_id"], item_id=state["item_id"], llm_call_id=d.call_id,
                writer_model=deps.writer.model, language=payload.get("lang"))
            status = s.get(RubricRecord, rid).status
        if status == rubric_store.REJECTED:
            return {"rubric_id": rid, "status": status, "outcome": "draft failed",
                    "failures": [f"draft: the writer repeated rejected rubric {rid}; change the seed or the writer"]}
        return {"rubric_id": rid, "status": status, "outcome": "pending: drafted"}

    def needs_review(state: DraftState) -> str:
        return "review" if settings.review_inline and state.get("status") == rubric_store.PENDING else END

    def review(state: DraftState) -> dict[str, Any]:
        """Pause until a reviewer decides; the interrupt carries only the rubric's id."""
        answer = interrupt({"rubric_id": state["rubric_id"], "item_id": state["item_id"]})
        decision = ReviewDecision.model_validate(answer)
        done = apply_decision(store, state["rubric_id"], decision)
        return {"rubric_id": done.rubric_id, "status": done.status, "outcome": f"{done.status}: reviewed"}

    g = StateGraph(DraftState)
    g.add_node("draft", draft)
    g.add_node("review", review)
    g.add_edge(START, "draft")
    g.add_conditional_edges("draft", needs_review, ["review", END])
    g.add_edge("review", END)
    return g.compile(checkpointer=InMemorySaver() if settings.review_inline else None)


class ReviewedGraph:
    """Runs the draft graph for one item and answers its interrupts with the reviewer, so the job
    runner sees a graph that simply finishes. The thread id is per run and item: a paused item that
    is abandoned (skipped, Ctrl-C, a crash) restarts from ``draft`` next time, which finds its
    pending draft and pauses again."""

    def __init__(self, graph: Any, reviewer: Reviewer):
        self.graph, self.reviewer = graph, reviewer

    async def ainvoke(self, state: dict[str, Any]) -> dict[str, Any]:
        config = {"configurable": {"thread_id": f"{state['run_id']}:{state['item_id']}"}}
        result = await self.graph.ainvoke(state, config)
        while result.get("__interrupt__"):
            decision = await self.reviewer(result["__interrupt__"][0].value)
            if decision is None:  # left for later: not done, so the next run of the job pauses on it again
                return {**result, "outcome": "pending: review skipped",
                        "failures": ["review skipped: the draft waits for review"]}
            result = await self.graph.ainvoke(Command(resume=decision.model_dump()), config)
        return result


def draft_outcome(state: dict[str, Any]) -> tuple[bool, str, list[str]]:
    failures = list(state.get("failures", []))
    return not failures, state.get("outcome", "no outcome"), failures


async def run_rubric_drafts(
    deps: RubricDraftDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
    item_concurrency: int = 8, lease_seconds: float = 600.0, redo: bool = False,
    on_item: Callable[[Any], None] | None = None,
) -> WorkflowReport:
    graph: Any = build_rubric_draft_graph(deps)
    if deps.settings.review_inline:
        if deps.reviewer is None:
            raise ValueError("inline review needs a reviewer")
        graph = ReviewedGraph(graph, deps.reviewer)
    return await run_workflow(
        deps.store, "rubric-drafts", deps.job_key, graph, records, deps.dataset, run_config, draft_outcome,
        {"rubric_writer": deps.writer}, item_concurrency=item_concurrency, lease_seconds=lease_seconds,
        redo=redo, on_item=on_item)
