"""The queries ``training/`` reads the store with: the preference pairs a model trains on, the
judgments behind their candidates, and the rubrics of their items.

Every function takes an open session and returns ORM rows or plain dicts; the caller turns them
into its own types inside the same ``with store.session()`` block. Id lists are queried in chunks
so a large selection never exceeds the database's bound-parameter limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import chunked
from store.models import Item, Judgment, PreferencePair


def preference_pairs(session: Session, *, kinds: list[str] | None = None, run_ids: list[str] | None = None,
                     min_margin: float | None = None, language: str | None = None,
                     limit: int | None = None) -> list[PreferencePair]:
    """Pairs matching the filters (an empty or ``None`` filter matches all), in id order; ``limit``
    keeps the first ones."""
    q = select(PreferencePair).order_by(PreferencePair.id)
    if kinds:
        q = q.where(PreferencePair.kind.in_(kinds))
    if run_ids:
        q = q.where(PreferencePair.run_id.in_(run_ids))
    if min_margin is not None:
        q = q.where(PreferencePair.margin >= min_margin)
    if language:
        q = q.where(PreferencePair.language == language)
    if limit is not None:
        q = q.limit(limit)
    return list(session.scalars(q))


def judgments(session: Session, *, ids: Iterable[int] = (), candidate_ids: Iterable[int] = ()) -> list[Judgment]:
    """The judgments with these ids, then every judgment of these candidates (a judgment matched by
    both comes back twice, as the two lookups are independent)."""
    rows: list[Judgment] = []
    for wanted, col in ((ids, Judgment.id), (candidate_ids, Judgment.candidate_id)):
        for chunk in chunked(wanted):
            rows.extend(session.scalars(select(Judgment).where(col.in_(chunk))))
    return rows


def item_rubrics(session: Session, item_ids: Iterable[int | None]) -> dict[int, dict[str, Any]]:
    """Item id -> the rubric in its payload (items without one are left out)."""
    out: dict[int, dict[str, Any]] = {}
    for chunk in chunked(i for i in item_ids if i is not None):
        for iid, payload in session.execute(select(Item.id, Item.payload).where(Item.id.in_(chunk))):
            if isinstance(payload, dict) and payload.get("rubric"):
                out[iid] = payload["rubric"]
    return out
