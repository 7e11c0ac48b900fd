"""Node-by-node persistence of search trees, so a search survives a crash and resumes exactly.

Each ``save`` writes only what changed since the last one (new nodes inserted, changed nodes
updated) in ONE transaction; the search saves once per completed iteration, so the stored tree is
always the tree after some whole iteration, never a half-done one. The reference code re-pickled
the whole tree every iteration; here an iteration writes O(depth) rows.

The search's own bookkeeping (creation order, fixed flag, cached priors, last reward, and on the
root the iteration count, charged LLM calls and seed) travels in the row's ``state`` JSON under the
reserved key ``_mcts``, beside the domain's state. Priors are stored as a list of pairs because
PostgreSQL's JSONB does not keep object key order, and the search's tie-breaks depend on it.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

from mcts.tree import RESERVED_STATE_KEY, ROOT_PATH, Node, Tree, TreeMeta
from store import Store, tree_nodes


@runtime_checkable
class NodeStore(Protocol):
    def save(self, tree: Tree) -> None:
        """Write the tree's new and changed nodes (``tree.dirty()``) in one transaction, then clear them."""
        ...

    def load_tree(self, tree_id: str) -> Tree:
        """Rebuild a saved tree in memory (KeyError when there is none)."""
        ...

    def exists(self, tree_id: str) -> bool:
        ...


# -- rows <-> nodes -----------------------------------------------------------------------------
def node_row(tree: Tree, node: Node) -> dict[str, Any]:
    """The ``tree_nodes`` columns for a node (without ids)."""
    book: dict[str, Any] = {
        "seq": node.seq, "fixed": node.fixed, "reward": node.reward, "qualified": node.qualified,
        "priors": None if node.priors is None else [[a, p] for a, p in node.priors],
    }
    if node.is_root:
        book["tree"] = tree.meta.to_json()
    return {
        "tree_id": tree.tree_id, "run_id": tree.run_id, "item_id": tree.item_id, "path": node.path,
        "depth": node.depth, "action": node.action, "prior": node.prior, "visits": node.visits,
        "value": node.value, "ended": node.ended, "evaluated": node.evaluated,
        "state": {**node.state, RESERVED_STATE_KEY: book}, "llm_call_ids": list(node.llm_call_ids),
    }


def tree_from_rows(tree_id: str, rows: list[dict[str, Any]]) -> Tree:
    """Rebuild a tree from its rows (any order): parents come from paths, order from ``seq``."""
    if not rows:
        raise KeyError(f"no tree {tree_id!r} in the store")

    def book_of(row: dict[str, Any]) -> dict[str, Any]:
        return (row.get("state") or {}).get(RESERVED_STATE_KEY) or {}

    rows = sorted(rows, key=lambda r: int(book_of(r).get("seq", 0)))
    root_row = rows[0]
    if root_row["path"] != ROOT_PATH:
        raise ValueError(f"tree {tree_id!r}: the first stored node is {root_row['path']!r}, not the root")
    tree = Tree(tree_id, run_id=root_row.get("run_id"), item_id=root_row.get("item_id"))
    tree.meta = TreeMeta.from_json(book_of(root_row).get("tree"))
    _fill(tree.root, root_row, book_of(root_row))
    for row in rows[1:]:
        book = book_of(row)
        parent_path = row["path"].rsplit("/", 1)[0]
        if parent_path not in tree:
            raise ValueError(f"tree {tree_id!r}: node {row['path']!r} has no stored parent")
        node = tree.add_child(tree.get(parent_path), row["action"])
        if node.path != row["path"]:
            raise ValueError(f"tree {tree_id!r}: stored path {row['path']!r} does not match its action")
        _fill(node, row, book)
    tree.take_dirty()  # what was just loaded is saved already
    return tree


def _fill(node: Node, row: dict[str, Any], book: dict[str, Any]) -> None:
    node.depth = int(row["depth"])
    node.prior = float(row["prior"])
    node.visits = int(row["visits"])
    node.value = float(row["value"])
    node.ended = bool(row["ended"])
    node.evaluated = bool(row["evaluated"])
    node.state = {k: v for k, v in (row.get("state") or {}).items() if k != RESERVED_STATE_KEY}
    node.llm_call_ids = list(row.get("llm_call_ids") or [])
    node.fixed = bool(book.get("fixed", False))
    node.reward = None if book.get("reward") is None else float(book["reward"])
    node.qualified = bool(book.get("qualified", False))
    priors = book.get("priors")
    node.priors = None if priors is None else [(str(a), float(p)) for a, p in priors]


# -- in memory ----------------------------------------------------------------------------------
class MemoryNodeStore:
    """Keeps rows as JSON text, as a database would: nothing is shared with the live tree."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, str]] = {}
        self.writes = 0  # rows written, to check that saves are incremental

    def save(self, tree: Tree) -> None:
        new, changed = tree.dirty()
        rows = self._rows.setdefault(tree.tree_id, {})
        staged: dict[str, str] = {}
        for node in new:
            if node.path in rows:
                raise ValueError(f"node {node.path!r} of tree {tree.tree_id!r} is already stored")
            staged[node.path] = json.dumps(node_row(tree, node))
        for node in changed:
            if node.path not in rows and node.path not in staged:
                raise ValueError(f"changed node {node.path!r} of tree {tree.tree_id!r} was never stored")
            staged[node.path] = json.dumps(node_row(tree, node))
        rows.update(staged)  # all or nothing: built first, applied in one step
        self.writes += len(staged)
        tree.clear_dirty()

    def load_tree(self, tree_id: str) -> Tree:
        return tree_from_rows(tree_id, [json.loads(r) for r in self._rows.get(tree_id, {}).values()])

    def exists(self, tree_id: str) -> bool:
        return bool(self._rows.get(tree_id))


# -- SQL ----------------------------------------------------------------------------------------
class SQLNodeStore:
    """Persists trees in ``tree_nodes`` (SQLite or PostgreSQL), one transaction per save.

    A thin adapter: nodes become rows here, every query is in ``store.tree_nodes`` (the store is the
    bottom layer and knows nothing of trees). It remembers the database ids it has seen, so a save
    resolves parents and changed nodes without a lookup per node.
    """

    def __init__(self, store: Store):
        self.store = store
        self._ids: dict[tuple[str, str], int] = {}

    def save(self, tree: Tree) -> None:
        new, changed = tree.dirty()
        if not new and not changed:
            return
        new_rows = [{**node_row(tree, n), tree_nodes.PARENT_PATH: None if n.parent is None else n.parent.path}
                    for n in new]
        ids = tree_nodes.save_node_rows(self.store, new_rows, [node_row(tree, n) for n in changed], self._ids)
        self._ids.update(ids)  # only once the transaction committed
        tree.clear_dirty()

    def load_tree(self, tree_id: str) -> Tree:
        rows = tree_nodes.load_node_rows(self.store, tree_id)
        self._ids.update({(tree_id, r["path"]): r["id"] for r in rows})
        return tree_from_rows(tree_id, rows)

    def exists(self, tree_id: str) -> bool:
        return tree_nodes.tree_exists(self.store, tree_id)

    def tree_ids(self) -> list[str]:
        return tree_nodes.tree_ids(self.store)


def load_tree(node_store: NodeStore, tree_id: str) -> Tree:
    """Rebuild ``tree_id`` from a node store, ready for ``MCTS(...).run()`` to resume it."""
    return node_store.load_tree(tree_id)
