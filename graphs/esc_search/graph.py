"""``carealign esc-search``: emotional-support strategy search with MCTS (CSO / ESC-Pro, PROTOCOLS §3).

One seed dialogue per item; the search loop is the graph's loop, one MCTS iteration per step:

    START -> seed_tree -> start_search -> mcts_iteration -> finish_search -> extract_pairs -> END
                                |           ^        | |          ^
                                |           +--------+ +-> END    |
                                +---------------------------------+

``mcts_iteration`` loops while no budget is spent (iterations, LLM calls, early stop), then the
search finishes; ``start_search`` goes straight to ``finish_search`` when the stored tree has spent
its budget already. A failed LLM call ends the item (it fails; the next run resumes its tree).

``seed_tree`` stores the tree of the seed dialogue (gold turns as fixed nodes) unless it is stored
already; ``start_search`` loads it and begins a run of ``mcts.MCTS`` over ``EscDomain`` (``domain.py``:
the ESC agents and the call-saving measures); each ``mcts_iteration`` is one select, expand,
simulate, backpropagate pass, after which the tree is saved node by node (``tree_nodes``).
Trees have one id per (search settings, item), so a killed run resumes the same tree and a larger
budget continues it. The state holds ids (``state.py``); nodes: ``nodes.py``; settings:
``configuration.py`` (``[esc]``); what a search produced: ``report.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph

from graphs.common.runner import ItemOutcome, WorkflowReport, run_workflow
from graphs.esc_search.configuration import EscSearchConfig
from graphs.esc_search.nodes import EscDeps, EscNodes
from graphs.esc_search.state import EscState


def recursion_limit(config: EscSearchConfig) -> int:
    """Graph steps an item may take: one per iteration of the budget, plus the steps around the loop."""
    return config.iterations + 10


def build_graph(deps: EscDeps | None = None):
    """The whole flow; without ``deps`` it can be drawn (``carealign graph esc-search``) but not run."""
    n = EscNodes(deps)

    def next_step(state: EscState) -> str:
        if state.get("failures"):
            return END
        return "finish_search" if state.get("stop_reason") else "mcts_iteration"

    g = StateGraph(EscState)
    g.add_node("seed_tree", n.seed_tree)
    g.add_node("start_search", n.start_search)
    g.add_node("mcts_iteration", n.mcts_iteration)
    g.add_node("finish_search", n.finish_search)
    g.add_node("extract_pairs", n.extract_pairs)
    g.add_edge(START, "seed_tree")
    g.add_edge("seed_tree", "start_search")
    g.add_conditional_edges("start_search", next_step, ["mcts_iteration", "finish_search"])
    g.add_conditional_edges("mcts_iteration", next_step, ["mcts_iteration", "finish_search", END])
    g.add_edge("finish_search", "extract_pairs")
    g.add_edge("extract_pairs", END)
    graph = g.compile()
    return graph if deps is None else graph.with_config(recursion_limit=recursion_limit(deps.config))


def search_outcome(state: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """A failed search fails the item (the next run retries it and resumes the tree)."""
    failures = list(state.get("failures") or [])
    return not failures, state.get("outcome", "no outcome"), failures


async def run_esc_search(deps: EscDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
                         redo: bool = False, on_item: Callable[[ItemOutcome], None] | None = None) -> WorkflowReport:
    """Store and queue the seed dialogues under this job and search a tree per item."""
    engines = {"supporter": deps.supporter, "judge": deps.judge}
    return await run_workflow(deps.store, "esc-search", deps.job_key, build_graph(deps), records, deps.dataset,
                              run_config, search_outcome, engines, config=deps.config, redo=redo, on_item=on_item)
