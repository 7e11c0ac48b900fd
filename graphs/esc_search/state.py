"""What flows through the esc-search graph: ids, the search's stop reason and its figures, never a
tree (trees are in ``tree_nodes``; the live search of an item is held by ``EscNodes`` between steps)."""

from __future__ import annotations

from typing import Any, TypedDict


class EscState(TypedDict, total=False):
    run_id: str
    item_id: int
    tree_id: str
    stop_reason: str | None  # None while no budget is spent: one more MCTS iteration
    search: dict[str, Any]  # the search report: iterations, calls, nodes, stop reason
    pairs: int
    failures: list[str]
    outcome: str
