"""The stored ESC pairs a ``db export --format esc-pro`` starts from: which trees, which pairs.

The selection is exactly ``db export``'s (``store.export.iter_pairs`` with the same ``PairFilter``);
this module only adds what the pairs' provenance says about where they came from (tree id, node
paths, the thresholds that kept them). The trees themselves are read through ``store.tree_nodes``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from store.db import Store, chunked
from store.export import PairFilter, iter_pairs
from store.models import PreferencePair


def selected_pair_origins(store: Store, flt: PairFilter) -> list[dict[str, Any]]:
    """One dict per selected pair, in id order: ``pair_id``, ``run_id``, ``item_id``, and from its
    provenance ``tree_id``, ``chosen_path``, ``rejected_path``, ``thresholds`` (None when absent)."""
    ids = [int(row[0]) for row in iter_pairs(store, flt)]
    out: list[dict[str, Any]] = []
    with store.session() as session:
        for chunk in chunked(ids):
            rows = session.execute(
                select(PreferencePair.id, PreferencePair.run_id, PreferencePair.item_id, PreferencePair.provenance)
                .where(PreferencePair.id.in_(chunk)).order_by(PreferencePair.id)
            )
            for pid, run_id, item_id, prov in rows:
                prov = prov or {}
                out.append({"pair_id": int(pid), "run_id": run_id, "item_id": item_id,
                            "tree_id": prov.get("tree_id"), "chosen_path": prov.get("chosen_path"),
                            "rejected_path": prov.get("rejected_path"), "thresholds": prov.get("thresholds")})
    return out
