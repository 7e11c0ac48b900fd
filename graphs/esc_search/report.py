"""What an ESC search produced: ESC-Pro-style dialogues, per-tree figures and the strategy mix.

Read from the trees themselves (``tree_nodes``), so a report after a resumed or repeated run counts
the whole tree, not only what the last run added.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select

from graphs.esc_domain import EscDeps, chat_prompt, tagged
from mcts import SQLNodeStore, Tree, extract_pairs, preferred_nodes
from store import Store
from store.models import Item
from store.records import sha256_of


def item_ids_for(store: Store, dataset: str, records: list[dict[str, Any]]) -> list[int]:
    """The stored items of ``records`` (those a run queued), in input order."""
    hashes = [sha256_of(r["payload"]) for r in records]
    with store.session() as s:
        found = dict(s.execute(select(Item.content_hash, Item.id).where(
            Item.dataset == dataset, Item.content_hash.in_(set(hashes)))).all())
    return [found[h] for h in hashes if h in found]


def load_trees(deps: EscDeps, item_ids: list[int]) -> list[Tree]:
    nodes = SQLNodeStore(deps.store)
    return [nodes.load_tree(deps.tree_id(i)) for i in item_ids if nodes.exists(deps.tree_id(i))]


def esc_pro_dialogues(deps: EscDeps, tree: Tree) -> list[dict[str, Any]]:
    """Each preferred root-to-ended path as a full dialogue; every supporter turn lists its rejected
    siblings (the pairs' negatives at that turn) with their Q and N."""
    s = deps.settings
    pairs = extract_pairs(tree, q_min=s.q_min, n_min=s.n_min, margin=s.margin)
    rejected: dict[str, list[dict[str, Any]]] = {}
    for p in pairs:
        rejected.setdefault(p.parent_path, []).append({"strategy": p.rejected.state["strategy"],
                                                       "content": p.rejected.state["supporter"],
                                                       "q": p.rejected.value, "n": p.rejected.visits})
    preferred = preferred_nodes(tree, s.q_min, s.n_min)
    out = []
    for leaf in tree:
        if not (leaf.ended and leaf.path in preferred):
            continue
        root = tree.root
        dialog: list[dict[str, Any]] = []
        if root.state.get("opening"):
            dialog.append({"speaker": "seeker", "content": root.state["opening"]})
        for n in leaf.lineage()[1:]:
            dialog.append({"speaker": "supporter", "strategy": n.state["strategy"], "content": n.state["supporter"],
                           "tagged": tagged(n), "gold": n.fixed, "q": n.value, "n": n.visits,
                           "rejected": rejected.get(n.parent.path, [])})
            if n.state.get("seeker"):
                dialog.append({"speaker": "seeker", "content": n.state["seeker"]})
        out.append({"tree_id": tree.tree_id, "item_id": tree.item_id, "path": leaf.path,
                    "persona": root.state.get("persona", {}), "strategy_set": deps.strategies.name,
                    "end_reason": leaf.state.get("end_reason"), "dialog": dialog})
    return out


def summarise(deps: EscDeps, trees: list[Tree]) -> dict[str, Any]:
    """Totals over the trees: iterations, nodes, LLM calls charged, pairs, margins, strategy mix."""
    s = deps.settings
    chosen: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    margins: list[float] = []
    skipped = 0
    for tree in trees:
        for p in extract_pairs(tree, q_min=s.q_min, n_min=s.n_min, margin=s.margin):
            if not chat_prompt(p.preferred.parent):
                skipped += 1
                continue
            chosen[p.preferred.state["strategy"]] += 1
            rejected[p.rejected.state["strategy"]] += 1
            margins.append(p.margin)
    calls = sum(t.meta.llm_calls for t in trees)
    return {
        "trees": len(trees), "iterations": sum(t.meta.iterations for t in trees),
        "nodes": sum(len(t) for t in trees), "ended_nodes": sum(t.count_ended() for t in trees),
        "llm_calls": calls, "pairs": len(margins), "pairs_without_prompt": skipped,
        "mean_margin": sum(margins) / len(margins) if margins else None,
        "calls_per_pair": calls / len(margins) if margins else None,
        "chosen_strategies": dict(sorted(chosen.items())), "rejected_strategies": dict(sorted(rejected.items())),
    }
