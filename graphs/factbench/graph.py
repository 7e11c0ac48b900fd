"""``carealign factbench build``: grow a MedFact-style benchmark from correct medical texts.

    START -> inject (x chosen error types, fan-out: injector call, then span verification)
          -> collect -> filter (x verified variants, fan-out: every criterion x every judge)
          -> finish -> END

Storage (no new tables; ``store/factbench.py`` names the rows, README "Building a fact-check
benchmark" describes them):
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

Nodes: ``nodes.py``; sources: ``sources.py``; settings: ``configuration.py`` (``[factbench]``);
expert review: ``review.py``; mining: ``mining.py``; export: ``export.py``; tables: ``report.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from graphs.common.runner import ItemOutcome, WorkflowReport, run_workflow
from graphs.factbench.nodes import FactbenchDeps, FactbenchNodes
from graphs.factbench.state import BuildState, FilterTask


def build_graph(deps: FactbenchDeps | None = None):
    """The whole flow; without ``deps`` it can be drawn (``carealign graph factbench``) but not run."""
    n = FactbenchNodes(deps)

    def fan_out_inject(state: BuildState) -> list[Send]:
        return [Send("inject", task) for task in n.inject_tasks(state)]

    def fan_out_filter(state: BuildState) -> list[Send] | str:
        verified = [v for v in state.get("variants", []) if v["status"] == "verified"]
        if not verified:
            return "finish"
        return [Send("filter", FilterTask(run_id=state["run_id"], item_id=state["item_id"], variant=v))
                for v in verified]

    g = StateGraph(BuildState)
    g.add_node("inject", n.inject)
    g.add_node("collect", n.collect)
    g.add_node("filter", n.filter_variant)
    g.add_node("finish", n.finish)
    g.add_conditional_edges(START, fan_out_inject, ["inject"])
    g.add_edge("inject", "collect")
    g.add_conditional_edges("collect", fan_out_filter, ["filter", "finish"])
    g.add_edge("filter", "finish")
    g.add_edge("finish", END)
    return g.compile()


def build_outcome(state: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """An item is done when every variant was decided or recorded as rejected. An LLM failure
    leaves it partial (some variants stored) or failed, so the next run of the job retries it."""
    failures = list(state.get("failures", []))
    if failures and state.get("variants"):
        return False, f"partial: {len(failures)} call(s) failed; {state.get('outcome', '')}", failures
    return not failures, state.get("outcome", "no outcome"), failures


async def run_factbench(deps: FactbenchDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
                        redo: bool = False, on_item: Callable[[ItemOutcome], None] | None = None) -> WorkflowReport:
    """Store and queue the sources under this round's job and run the graph over the queue."""
    engines = {"injector": deps.injector, **{f"judge_{i + 1}": j for i, j in enumerate(deps.judges)}}
    return await run_workflow(deps.store, "factbench", deps.job_key, build_graph(deps), records, deps.dataset,
                              {**run_config, "round": deps.config.round}, build_outcome, engines,
                              config=deps.config,
                              redo=redo, on_item=on_item)
