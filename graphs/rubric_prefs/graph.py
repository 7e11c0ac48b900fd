"""``carealign rubric-prefs``: rubric-grounded, safety-first preference pairs (ProMedical).

    START -> write_candidates (generators x N answers at once; exact duplicates dropped)
          -> grade_candidates (each distinct candidate at once) -> select_pair -> END

Every instruction carries its clinical rubric (in the item's payload). Each candidate is graded
criterion by criterion (met / not met with an explanation), its S1/S2/S3 are stored for this job,
and the pair is chosen safety first (``agents.pair_selection``): a veto is never bought back by
utility. With fewer than two distinct candidates grading is skipped. Each node fans out itself
(``graphs.common.fan_out``): one LangGraph task per branch would cost more CPU than the requests
it waits for at a fast model server. Each pair records its margins in S1, S2 and S3, the judgments
behind it, and why it was kept; each candidate left out records why. Nodes: ``nodes.py``;
settings: ``configuration.py`` (``[rubric_prefs]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph

from graphs.common.candidates import pairing_outcome
from graphs.common.runner import ItemOutcome, WorkflowReport, run_workflow
from graphs.rubric_prefs.nodes import RubricPrefsDeps, RubricPrefsNodes
from graphs.rubric_prefs.state import RubricPrefsState


def build_graph(deps: RubricPrefsDeps | None = None):
    """The whole flow; without ``deps`` it can be drawn but not run."""
    n = RubricPrefsNodes(deps)

    def grade_or_skip(state: RubricPrefsState) -> str:
        return "grade_candidates" if len(state.get("distinct_ids", [])) >= 2 else "select_pair"

    g = StateGraph(RubricPrefsState)
    g.add_node("write_candidates", n.write_candidates)
    g.add_node("grade_candidates", n.grade_candidates)
    g.add_node("select_pair", n.select_pair)
    g.add_edge(START, "write_candidates")
    g.add_conditional_edges("write_candidates", grade_or_skip, ["grade_candidates", "select_pair"])
    g.add_edge("grade_candidates", "select_pair")
    g.add_edge("select_pair", END)
    return g.compile()


async def run_rubric_prefs(deps: RubricPrefsDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
                           redo: bool = False, on_item: Callable[[ItemOutcome], None] | None = None) -> WorkflowReport:
    """Store and queue the instructions under this job and run the graph over the queue."""
    engines: dict[str, Any] = {f"generator:{g.model}": g for g in deps.generators}
    engines["grader"] = deps.grader
    if deps.second_grader is not None:
        engines["second_grader"] = deps.second_grader
    return await run_workflow(
        deps.store, "rubric-prefs", deps.job_key, build_graph(deps), records, deps.dataset, run_config,
        pairing_outcome, engines, config=deps.config, redo=redo, on_item=on_item)
