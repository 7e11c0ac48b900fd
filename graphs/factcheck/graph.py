"""``carealign factcheck run``: one checking graph runs every method of ``graphs.factcheck.methods``.

    START -> (triage) -> ask_agents (every agent of the round at once) -> ask_agents ... (x rounds)
          -> aggregate -> (judge_location) -> END

Round 0: every agent answers alone (self-consistency samples, debaters, specialists, or the one
checker); each later round (debate) every agent sees its own and the others' previous answers.
``aggregate`` gives the method's answer: the single answer, a majority vote, a judge over the last
round, or the moderator over the specialists. With triage (MDAgents), an easy text goes to one
reasoning agent and a hard one to the team. Every answer of every agent in every round is stored
(``check_answers``), so over-criticism can be followed round by round. Nodes: ``nodes.py``;
settings: ``configuration.py`` (``[factcheck]``); the comparison of methods: ``report.py``.
A round's agents are asked by one node (``graphs.common.fan_out``), not one LangGraph task each:
at a fast model server those tasks cost more CPU than the requests they wait for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph

from graphs.common.runner import ItemOutcome, WorkflowReport, run_workflow
from graphs.factcheck.nodes import FactcheckDeps, FactcheckNodes
from graphs.factcheck.state import CheckState


def build_graph(deps: FactcheckDeps | None = None):
    """The whole flow; without ``deps`` it can be drawn (``carealign graph factcheck``) but not run."""
    n = FactcheckNodes(deps)

    def start(state: CheckState) -> str:
        return "triage" if n.deps.method.triage else "ask_agents"

    def after_round(state: CheckState) -> str:
        answered = any(a["round"] == state["round"] - 1 for a in state.get("answers", []))
        return "ask_agents" if answered and state["round"] < n.rounds_now(state) else "aggregate"

    def needs_location_judge(state: CheckState) -> str:
        judged = n.deps.location_judge is not None and state.get("final", {}).get("verdict") == "error"
        return "judge_location" if judged else END

    g = StateGraph(CheckState)
    g.add_node("triage", n.triage)
    g.add_node("ask_agents", n.ask_agents)
    g.add_node("aggregate", n.aggregate)
    g.add_node("judge_location", n.judge_location)
    g.add_conditional_edges(START, start, ["triage", "ask_agents"])
    g.add_edge("triage", "ask_agents")
    g.add_conditional_edges("ask_agents", after_round, ["ask_agents", "aggregate"])
    g.add_conditional_edges("aggregate", needs_location_judge, ["judge_location", END])
    g.add_edge("judge_location", END)
    return g.compile()


def check_outcome(state: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """An item is done when the method gave its final answer and every call it planned succeeded;
    with a failed call it is partial (answers stored, the rest made by a re-run) or failed."""
    failures = list(state.get("failures", []))
    if "final" in state and failures:
        return False, f"partial: final answer stored, {len(failures)} call(s) after it failed", failures
    return "final" in state and not failures, state.get("outcome", "no outcome"), failures


def records_of(items: list) -> list[dict[str, Any]]:
    """Dataset items (``FactCheckItem``) as store records: the gold fields ride in the payload (only
    the location judge and the report read them; checkers get the sentences alone)."""
    return [{"payload": it.model_dump(mode="json", exclude_none=True, exclude={"id", "source"}),
             "external_id": it.id, "source": it.source} for it in items]


async def run_factcheck(deps: FactcheckDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
                        redo: bool = False, on_item: Callable[[ItemOutcome], None] | None = None) -> WorkflowReport:
    """Store and queue the texts under this method's job and run the graph over the queue.

    Texts already checked by an earlier run of the same job are skipped; failed ones are retried."""
    engines = {"checker": deps.checker}
    if deps.location_judge is not None:
        engines["location_judge"] = deps.location_judge
    return await run_workflow(deps.store, "factcheck", deps.job_key, build_graph(deps), records, deps.dataset,
                              {**run_config, "method": deps.method.name}, check_outcome, engines,
                              config=deps.config,
                              redo=redo, on_item=on_item)
