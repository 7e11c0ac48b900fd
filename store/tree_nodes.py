"""Every query on ``tree_nodes``: search trees stored node by node, as plain dict rows.

The store is the bottom layer, so this module knows nothing of ``mcts``: a caller (``mcts.persist``)
turns its nodes into rows (the table's columns, without ids) and back. Rows are identified by
``(tree_id, path)``, the table's unique key; database ids only link a node to its parent
(``parent_id``), so the caller may keep the ids it has seen to spare this module a lookup per parent.

``save_node_rows`` writes one save (new rows inserted, changed rows updated) in ONE transaction:
the stored tree is always the tree after some whole search iteration, never a half-written one.
Behaves the same on SQLite and PostgreSQL (JSON columns are JSONB there, which keeps no object key
order: a caller that needs an order stores a list).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from store.db import Store
from store.models import TreeNode

# What a save may change on a stored node; the rest (tree, run, item, path, depth, action) is fixed at insert.
UPDATABLE = ("prior", "visits", "value", "ended", "evaluated", "state", "llm_call_ids")
# The columns a row dict carries in and out (loaded rows add ``id``).
COLUMNS = ("tree_id", "run_id", "item_id", "path", "depth", "action", *UPDATABLE)
# The key of a new row naming its parent's path (None for a root): not a column, resolved to parent_id.
PARENT_PATH = "parent_path"

NodeKey = tuple[str, str]  # (tree_id, path)


def save_node_rows(store: Store, new_rows: Sequence[Mapping[str, Any]], changed_rows: Sequence[Mapping[str, Any]],
                   known_ids: Mapping[NodeKey, int] | None = None) -> dict[NodeKey, int]:
    """Insert ``new_rows`` and update ``changed_rows`` in one transaction; all or nothing.

    A new row holds the ``COLUMNS`` plus ``parent_path`` (None for a root): its parent is either
    another new row of the same save or a node stored before, and new rows are inserted shallowest
    first so a parent always has its id before its children need it. A changed row must be stored
    already (ValueError otherwise, and nothing is written); only its ``UPDATABLE`` columns are written.

    ``known_ids`` are ids the caller learnt earlier (from a load or a save) and spare a lookup.
    Returns the ids this save inserted or looked up, for the caller to remember; only a committed
    save returns, so a rolled-back one never leaves the caller with ids that do not exist.
    """
    known = known_ids or {}
    resolved: dict[NodeKey, int] = {}
    if not new_rows and not changed_rows:
        return resolved
    with store.session() as session:
        for depth in sorted({int(r["depth"]) for r in new_rows}):  # parents (shallower) get their ids first
            level = [r for r in new_rows if int(r["depth"]) == depth]
            objs = []
            for row in level:
                parent_path = row.get(PARENT_PATH)
                parent_id = None if parent_path is None else \
                    _node_id(session, (row["tree_id"], parent_path), known, resolved)
                objs.append(TreeNode(parent_id=parent_id, **{c: row[c] for c in COLUMNS}))
            session.add_all(objs)
            session.flush()
            resolved.update({(r["tree_id"], r["path"]): o.id for r, o in zip(level, objs, strict=True)})
        for row in changed_rows:
            node_id = _node_id(session, (row["tree_id"], row["path"]), known, resolved)
            session.execute(update(TreeNode).where(TreeNode.id == node_id).values(**{k: row[k] for k in UPDATABLE}))
    return resolved


def _node_id(session: Session, key: NodeKey, known: Mapping[NodeKey, int], resolved: dict[NodeKey, int]) -> int:
    """The id of a node of this save or a stored one (looked up once, then remembered in ``resolved``)."""
    if key in resolved:
        return resolved[key]
    if key in known:
        return known[key]
    tree_id, path = key
    found = session.execute(
        select(TreeNode.id).where(TreeNode.tree_id == tree_id, TreeNode.path == path)
    ).scalar_one_or_none()
    if found is None:
        raise ValueError(f"node {path!r} of tree {tree_id!r} was never stored")
    resolved[key] = found
    return found


def load_node_rows(store: Store, tree_id: str) -> list[dict[str, Any]]:
    """Every stored row of a tree (``id`` plus ``COLUMNS``), in no particular order; [] when there is none."""
    with store.session() as session:
        result = session.execute(
            select(TreeNode.id, *(getattr(TreeNode, c) for c in COLUMNS)).where(TreeNode.tree_id == tree_id)
        )
        return [dict(r._mapping) for r in result]


def tree_exists(store: Store, tree_id: str) -> bool:
    """Whether any node of the tree is stored (one indexed probe, no rows read)."""
    with store.session() as session:
        return session.execute(select(TreeNode.id).where(TreeNode.tree_id == tree_id).limit(1)).first() is not None


def tree_ids(store: Store) -> list[str]:
    """The ids of every stored tree, sorted."""
    with store.session() as session:
        return list(session.execute(select(TreeNode.tree_id).distinct().order_by(TreeNode.tree_id)).scalars())


def count_nodes(store: Store, tree_id: str) -> int:
    """How many nodes of the tree are stored (without loading them)."""
    with store.session() as session:
        return int(session.execute(
            select(func.count()).select_from(TreeNode).where(TreeNode.tree_id == tree_id)
        ).scalar_one())
