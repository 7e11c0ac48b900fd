"""``carealign rubric-prefs``: rubric-grounded, safety-first preference pairs (ProMedical).

    START -> generate_candidate (x generators x N, fan-out) -> distinct_candidates
          -> grade_candidate (x candidates, fan-out) -> select_pair -> END

Every instruction carries its clinical rubric (in the item's payload). Each candidate is graded
criterion by criterion (met / not met with an explanation), its S1/S2/S3 are stored for this job,
and the pair is chosen safety first (``agents.pair_selection``): a veto is never bought back by
utility. Each pair records its margins in S1, S2 and S3, the judgments behind it, and why it was
kept; each candidate left out records why. Nodes: ``nodes.py``; settings: ``configuration.py``
(``[rubric_prefs]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from graphs.common.candidates import pairing_outcome
from graphs.common.runner import ItemOutcome, WorkflowReport, run_workflow
from graphs.rubric_prefs.nodes import RubricPrefsDeps, RubricPrefsNodes
from graphs.rubric_prefs.state import GradeTask, RubricPrefsState, SampleTask


def build_graph(deps: RubricPrefsDeps | None = None):
    """The whole flow; without ``deps`` it can be drawn but not run."""
    n = RubricPrefsNodes(deps)

    def fan_out_samples(state: RubricPrefsState) -> list[Send]:
        return [Send("generate_candidate", SampleTask(run_id=state["run_id"], item_id=state["item_id"],
                                                      generator=g, sample_index=i))
                for g in range(len(n.deps.generators)) for i in range(n.deps.config.n_candidates)]

    def fan_out_grading(state: RubricPrefsState) -> list[Send] | str:
        if len(state.get("distinct_ids", [])) < 2:
            return "select_pair"
        return [Send("grade_candidate", GradeTask(run_id=state["run_id"], item_id=state["item_id"], candidate_id=c))
                for c in state["distinct_ids"]]

    g = StateGraph(RubricPrefsState)
    g.add_node("generate_candidate", n.generate_candidate)
    g.add_node("distinct_candidates", n.distinct_candidates)
    g.add_node("grade_candidate", n.grade_candidate)
    g.add_node("select_pair", n.select_pair)
    g.add_conditional_edges(START, fan_out_samples, ["generate_candidate"])
    g.add_edge("generate_candidate", "distinct_candidates")
    g.add_conditional_edges("distinct_candidates", fan_out_grading, ["grade_candidate", "select_pair"])
    g.add_edge("grade_candidate", "select_pair")
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
