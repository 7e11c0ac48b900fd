"""What an ESC search produced: ESC-Pro-style dialogues, per-tree figures and the strategy mix, and
the files a run writes (dialogues JSON, one GraphML per tree, a PNG of one tree, and on request the
dialogues in the published ESC-Pro shape, ``esc_pro.py``).

Read from the trees themselves (``tree_nodes``), so a report after a resumed or repeated run counts
the whole tree, not only what the last run added.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphs.esc_search.domain import chat_prompt, tagged, tree_pairs
from graphs.esc_search.esc_pro import FILE_NAME as ESC_PRO_FILE
from graphs.esc_search.esc_pro import EscProDialogues, negatives_by_turn, tree_to_esc_pro, write_esc_pro
from graphs.esc_search.nodes import EscDeps
from mcts import SQLNodeStore, Tree, preferred_nodes
from store.lookups import stored_item_ids


def load_trees(deps: EscDeps, records: list[dict[str, Any]]) -> list[Tree]:
    """The stored trees of these seed dialogues (those a run queued), in input order."""
    nodes = SQLNodeStore(deps.store)
    tree_ids = [deps.tree_id(i) for i in stored_item_ids(deps.store, deps.dataset, records)]
    return [nodes.load_tree(t) for t in tree_ids if nodes.exists(t)]


def esc_pro_dialogues(deps: EscDeps, tree: Tree) -> list[dict[str, Any]]:
    """Each preferred root-to-ended path as a full dialogue; every supporter turn lists its rejected
    siblings with their Q and N: the pairs in which that turn is the preferred side (a preferred turn
    that is not its parent's best preferred child has none, as in the stored pairs)."""
    c = deps.config
    negatives = negatives_by_turn(tree_pairs(tree, c))
    preferred = preferred_nodes(tree, c.q_min, c.n_min)
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
                           "rejected": [{"strategy": p.rejected.state["strategy"],
                                         "content": p.rejected.state["supporter"], "q": p.rejected.value,
                                         "n": p.rejected.visits} for p in negatives.get(n.path, [])]})
            if n.state.get("seeker"):
                dialog.append({"speaker": "seeker", "content": n.state["seeker"]})
        out.append({"tree_id": tree.tree_id, "item_id": tree.item_id, "path": leaf.path,
                    "persona": root.state.get("persona", {}), "strategy_set": deps.strategies.name,
                    "end_reason": leaf.state.get("end_reason"), "dialog": dialog})
    return out


def summarise(deps: EscDeps, trees: list[Tree]) -> dict[str, Any]:
    """Totals over the trees: iterations, nodes, LLM calls charged, pairs, margins, strategy mix."""
    chosen: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    margins: list[float] = []
    skipped = 0
    for tree in trees:
        for p in tree_pairs(tree, deps.config):
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


@dataclass
class Written:
    """What ``write_outputs`` wrote (``esc_pro``: the CSO-shaped dialogues, when asked for)."""

    dialogues: int
    graphml: int
    picture: Path | None
    esc_pro: EscProDialogues | None = None


def esc_pro_of(deps: EscDeps, trees: list[Tree]) -> EscProDialogues:
    """The trees' kept paths in the published ESC-Pro shape (``esc_pro.py``), every pair a negative."""
    out = EscProDialogues()
    for t in trees:
        out.extend(tree_to_esc_pro(t, deps.config))
    return out


def write_outputs(deps: EscDeps, trees: list[Tree], out_dir: Path, *, esc_pro: bool = False) -> Written:
    """``esc_pro_dialogues.json`` (the preferred paths as dialogues, with ids, Q and N), one GraphML per
    tree, a PNG of the tree with the most preferred dialogues (then the most nodes), and with
    ``esc_pro`` also ``esc_pro_cso.json`` (+ its provenance sidecar), the shape CSO's converters read."""
    from mcts.export import render_png, write_graphml  # networkx and matplotlib: only when writing

    out_dir.mkdir(parents=True, exist_ok=True)
    dialogues = [d for t in trees for d in esc_pro_dialogues(deps, t)]
    (out_dir / "esc_pro_dialogues.json").write_text(json.dumps(dialogues, ensure_ascii=False, indent=1),
                                                    encoding="utf-8")
    cso = None
    if esc_pro:
        cso = esc_pro_of(deps, trees)
        write_esc_pro(out_dir / ESC_PRO_FILE, cso)
    for t in trees:
        write_graphml(t, out_dir / f"{t.tree_id}.graphml")
    picture = None
    if trees:
        best = max(trees, key=lambda t: (sum(1 for d in dialogues if d["tree_id"] == t.tree_id), len(t)))
        picture = out_dir / f"{best.tree_id}.png"
        render_png(best, picture)
    return Written(len(dialogues), len(trees), picture, cso)
