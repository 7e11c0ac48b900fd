"""Reads by id that the graphs' nodes make: an item's payload, candidates and their texts.

Kept here so that every query lives in ``store``; the nodes get plain values or ORM rows back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select

from store.db import Store
from store.models import Candidate, Item
from store.records import sha256_of


def item_payload(store: Store, item_id: int) -> dict[str, Any]:
    with store.session() as s:
        item = s.get(Item, item_id)
        if item is None:
            raise KeyError(f"item {item_id} is not in the store")
        return dict(item.payload)


def candidates(store: Store, candidate_ids: Iterable[int]) -> dict[int, Candidate]:
    """The candidates with these ids (detached rows: read their columns, do not lazy-load)."""
    ids = list(set(candidate_ids))
    if not ids:
        return {}
    with store.session() as s:
        rows = s.scalars(select(Candidate).where(Candidate.id.in_(ids))).all()
        s.expunge_all()
    return {c.id: c for c in rows}


def candidate_text(store: Store, candidate_id: int) -> str:
    with store.session() as s:
        row = s.get(Candidate, candidate_id)
        if row is None:
            raise KeyError(f"candidate {candidate_id} is not in the store")
        return row.text


def stored_item_ids(store: Store, dataset: str, records: Sequence[dict[str, Any]]) -> list[int]:
    """The stored item ids of ``records`` (as ``records.upsert_items`` keyed them: dataset and
    content hash), in input order; records never stored are left out."""
    hashes = [sha256_of(r["payload"]) for r in records]
    with store.session() as s:
        found = dict(s.execute(select(Item.content_hash, Item.id).where(
            Item.dataset == dataset, Item.content_hash.in_(set(hashes)))).all())
    return [found[h] for h in hashes if h in found]
