"""Reviewer decisions on drafted rubrics, and the wrapper that answers the graph's review pauses.

The same ``apply_decision`` records a decision made inline (the graph paused with LangGraph's
``interrupt``), in the terminal (``carealign rubrics review``) or by any other front end."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from langgraph.types import Command
from pydantic import BaseModel, ConfigDict, Field

from agents.rubric import Origin, Rubric
from store import Store
from store import rubrics as rubric_store


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
            draft = rubric_store.rubric_by_id(s, rubric_id)
            before = {json.dumps(c, sort_keys=True) for c in (draft.rubric["criteria"] if draft else [])}
        parsed = Rubric.model_validate(decision.rubric)
        for c in parsed.criteria:
            if json.dumps(c.model_dump(mode="json"), sort_keys=True) not in before:
                c.origin = Origin.HUMAN_EDITED
        edited = parsed.model_dump(mode="json")
    with store.session() as s:
        return rubric_store.decide(s, rubric_id, decision.decision, decision.reviewer, decision.reason, edited)


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
