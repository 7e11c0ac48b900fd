"""``carealign rubrics draft``: rubrics for instructions that have none, with a human in the loop.

    START -> draft -> (review: LangGraph interrupt, when reviewing inline) -> END

``draft`` reuses the instruction's current rubric when there is one (approved, or a draft still
waiting for review), and otherwise asks the rubric writer, with few-shot examples chosen from the
pool of approved rubrics (``pool.py``) and the reasons reviewers gave for rejecting earlier drafts.
A new draft is stored ``pending``. With inline review the graph then pauses (``interrupt``) with the
rubric's id; the caller shows it to a reviewer and resumes the graph with the decision
(``review.py``). Without it, drafts wait in the store for ``carealign rubrics review``; running the
command again resumes where it stopped (an item whose draft is pending pauses again; an item already
decided is not redrafted). Settings: ``configuration.py`` (``[rubrics]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from graphs.common.runner import WorkflowReport, run_workflow
from graphs.rubric_drafts.nodes import RubricDraftDeps, RubricDraftNodes
from graphs.rubric_drafts.review import ReviewedGraph
from graphs.rubric_drafts.state import DraftState
from store import rubrics as rubric_store


def build_graph(deps: RubricDraftDeps | None = None):
    """The whole flow; without ``deps`` it can be drawn but not run. Inline review needs a
    checkpointer: the paused graph is resumed on the same thread."""
    n = RubricDraftNodes(deps)
    inline = deps is not None and deps.review_inline

    def needs_review(state: DraftState) -> str:
        return "review" if inline and state.get("status") == rubric_store.PENDING else END

    g = StateGraph(DraftState)
    g.add_node("draft", n.draft)
    g.add_node("review", n.review)
    g.add_edge(START, "draft")
    g.add_conditional_edges("draft", needs_review, ["review", END])
    g.add_edge("review", END)
    return g.compile(checkpointer=InMemorySaver() if inline else None)


def draft_outcome(state: dict[str, Any]) -> tuple[bool, str, list[str]]:
    failures = list(state.get("failures", []))
    return not failures, state.get("outcome", "no outcome"), failures


async def run_rubric_drafts(deps: RubricDraftDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
                            redo: bool = False, on_item: Callable[[Any], None] | None = None) -> WorkflowReport:
    graph: Any = build_graph(deps)
    if deps.review_inline:
        if deps.reviewer is None:
            raise ValueError("inline review needs a reviewer")
        graph = ReviewedGraph(graph, deps.reviewer)
    return await run_workflow(
        deps.store, "rubric-drafts", deps.job_key, graph, records, deps.dataset, run_config, draft_outcome,
        {"rubric_writer": deps.writer}, config=deps.config, redo=redo, on_item=on_item)
