"""``carealign esc-search``: emotional-support strategy search with MCTS (CSO / ESC-Pro, PROTOCOLS §3).

    START -> seed_tree -> search -> extract_pairs -> END        (one seed dialogue per item)

``EscDomain`` plugs the ESC agents into the generic ``mcts.MCTS``. A node is one supporter turn: its
strategy (the action), the supporter text, the simulated seeker reply and an ``ended`` flag; every
LLM call that made or evaluated it is on its ``llm_call_ids``. Trees live in ``tree_nodes`` through
``SQLNodeStore`` with one tree id per (search settings, item), so a killed run resumes the same
tree and a larger budget continues it.

Fewer calls than the reference (measured in tests/perf/bench_esc.py), each a setting:
- priors: one strategist call per node, cached in the node (the MCTS asks once; the first rollout
  step from a node reuses it too);
- ``batch_expand``: the ``expand_k`` siblings the search materialises at once are written by ONE
  structured supporter call (one response per strategy), not ``n`` > 1 samples of one prompt;
- ``lazy_seeker``: a sibling's seeker reply is simulated only when the sibling is first evaluated;
- ``reuse_rollouts``: a rollout's turns are kept in the node; the child that the rollout's greedy
  first step took becomes a node with that turn, its score and the rest of the rollout, for free;
- ``batch_judge`` / ``cache_scores``: every supporter turn is judged once, all new turns of a
  simulation in one call, and the score is kept with the turn;
- early stop: a tree stops when no turn joined a preference pair for ``early_stop_patience``
  iterations (a pair formed by two turns both already in other pairs, neither on the iteration's
  path, does not count).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from agents.engine import CallContext
from agents.errors import LLMCallFailed
from graphs.esc_domain import EscDeps, EscDomain, EscSettings, chat_prompt, tagged
from graphs.esc_seed import seed_tree
from graphs.runner import ItemOutcome, WorkflowReport, run_workflow
from mcts import MCTS, CallCounter, Node, SearchConfig, SQLNodeStore, Tree, extract_pairs
from store.records import add_pairs


class EscState(TypedDict, total=False):
    run_id: str
    item_id: int
    tree_id: str
    search: dict[str, Any]
    pairs: int
    failures: list[str]
    outcome: str


def pair_members(tree: Tree, s: EscSettings) -> Callable[[Node], bool]:
    """The early-stop test: a node qualifies when it is one side of a current pair."""
    memo: dict[int, set[str]] = {}

    def qualifies(node: Node) -> bool:
        it = tree.meta.iterations
        if it not in memo:
            memo.clear()
            memo[it] = {p for pair in extract_pairs(tree, q_min=s.q_min, n_min=s.n_min, margin=s.margin)
                        for p in (pair.preferred.path, pair.rejected.path)}
        return node.path in memo[it]

    return qualifies


def search_config(s: EscSettings, tree: Tree) -> SearchConfig:
    return SearchConfig(c_puct=s.c_puct, iterations=s.iterations, max_llm_calls=s.max_llm_calls,
                        max_depth=max_depth(s, tree), seed=s.seed, expand_k=s.expand_k,
                        early_stop_patience=s.early_stop_patience, unvisited_q=s.unvisited_q)


def max_depth(s: EscSettings, tree: Tree) -> int:
    return int(tree.root.state.get("gold_turns", 0)) + s.max_new_turns


def pair_rows(deps: EscDeps, tree: Tree, run_id: str, item_id: int) -> tuple[list[dict[str, Any]], int]:
    """Preference-pair rows of a tree (trl conversational), and how many had no prompt to give."""
    s, rows, empty = deps.settings, [], 0
    for p in extract_pairs(tree, q_min=s.q_min, n_min=s.n_min, margin=s.margin):
        prompt = chat_prompt(p.preferred.parent)
        if not prompt:
            empty += 1
            continue
        c, r = p.preferred, p.rejected
        rows.append({
            "kind": "esc", "run_id": run_id, "item_id": item_id, "prompt": prompt, "chosen": tagged(c),
            "rejected": tagged(r), "margin": p.margin, "language": "en",
            "margins": {"q": p.margin, "chosen_q": c.value, "chosen_n": c.visits, "rejected_q": r.value,
                        "rejected_n": r.visits},
            "provenance": {
                "tree_id": tree.tree_id, "tree_key": deps.tree_key, "parent_path": p.parent_path,
                "chosen_path": c.path, "rejected_path": r.path, "chosen_strategy": c.state["strategy"],
                "rejected_strategy": r.state["strategy"], "chosen_gold": c.fixed,
                "llm_call_ids": {"chosen": list(c.llm_call_ids), "rejected": list(r.llm_call_ids)},
                "strategy_set": deps.strategies.name, "supporter_model": deps.supporter.model,
                "judge_model": deps.judge.model, "thresholds": {"q_min": s.q_min, "n_min": s.n_min,
                                                                "margin": s.margin}},
        })
    return rows, empty


def build_esc_graph(deps: EscDeps):
    store, s = deps.store, deps.settings
    nodes = SQLNodeStore(store)

    def seed(state: EscState) -> dict[str, Any]:
        from graphs.candidates import item_payload

        tree_id = deps.tree_id(state["item_id"])
        if not nodes.exists(tree_id):
            nodes.save(seed_tree(tree_id, item_payload(store, state["item_id"]), s.gold_turns,
                                 run_id=state["run_id"], item_id=state["item_id"]))
        return {"tree_id": tree_id}

    async def search(state: EscState) -> dict[str, Any]:
        tree = nodes.load_tree(state["tree_id"])
        counter = CallCounter()
        ctx = CallContext(run_id=state["run_id"], item_id=state["item_id"])
        domain = EscDomain(deps.supporter, deps.judge, deps.strategies, s, counter, ctx, max_depth(s, tree))
        mcts = MCTS(domain, tree, search_config(s, tree), node_store=nodes, counter=counter,
                    qualifies=pair_members(tree, s))
        try:
            report = await mcts.run()
        except LLMCallFailed as exc:
            return {"failures": [f"search[{state['tree_id']} iteration {tree.meta.iterations + 1}]: {exc.reason}"],
                    "outcome": "search failed"}
        return {"search": {"iterations": report.iterations, "this_run": report.iterations_this_run,
                           "llm_calls": report.llm_calls, "calls_this_run": counter.count, "nodes": report.nodes,
                           "stop_reason": report.stop_reason}}

    def after_search(state: EscState) -> str:
        return END if state.get("failures") else "extract_pairs"

    def extract(state: EscState) -> dict[str, Any]:
        tree = nodes.load_tree(state["tree_id"])
        rows, empty = pair_rows(deps, tree, state["run_id"], state["item_id"])
        with store.session() as sess:
            new = add_pairs(sess, rows)
        note = f" ({empty} without a prompt skipped)" if empty else ""
        return {"pairs": len(rows), "outcome": f"{len(rows)} pairs, {new} new{note}" if rows else f"no pair{note}"}

    g = StateGraph(EscState)
    g.add_node("seed_tree", seed)
    g.add_node("search", search)
    g.add_node("extract_pairs", extract)
    g.add_edge(START, "seed_tree")
    g.add_edge("seed_tree", "search")
    g.add_conditional_edges("search", after_search, ["extract_pairs", END])
    g.add_edge("extract_pairs", END)
    return g.compile()


def search_outcome(state: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """A failed search fails the item (the next run retries it and resumes the tree)."""
    failures = list(state.get("failures") or [])
    return not failures, state.get("outcome", "no outcome"), failures


async def run_esc_search(deps: EscDeps, records: list[dict[str, Any]], run_config: dict[str, Any], *,
                         item_concurrency: int = 4, lease_seconds: float = 600.0, redo: bool = False,
                         on_item: Callable[[ItemOutcome], None] | None = None) -> WorkflowReport:
    engines = {"supporter": deps.supporter, "judge": deps.judge}
    return await run_workflow(deps.store, "esc-search", deps.job_key, build_esc_graph(deps), records, deps.dataset,
                              run_config, search_outcome, engines, item_concurrency=item_concurrency,
                              lease_seconds=lease_seconds, redo=redo, on_item=on_item)
