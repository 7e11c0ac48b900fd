"""Progress and agreement of the review queues: what the admin page and ``carealign review report``
show. The labels come from the review slots (``store.review``); the figures from
``benchmarks.agreement`` (Cohen's kappa for two reviews per item, Fleiss' for more)."""

from __future__ import annotations

from typing import Any

from benchmarks.agreement import agreement
from carealign.web.queues import QUEUES
from store import Store
from store import review as review_store

QUEUE_TITLES = {name: q.title for name, q in QUEUES.items()}


def queue_agreement(store: Store, queue: str) -> dict[str, Any]:
    """Agreement over the items with two or more reviews: per criterion (a rubric's decision, a
    variant's filter criteria, a pair's verdict) and over all of them pooled (each item and
    criterion one rated unit)."""
    by_item = review_store.done_labels(store, queue)
    criteria = sorted({c for labels in by_item.values() for one in labels for c in one if not c.startswith("_")})
    per: dict[str, Any] = {}
    pooled: list[list[str]] = []
    for c in criteria:
        ratings = [[str(one[c]) for one in labels if c in one] for labels in by_item.values()]
        per[c] = agreement(ratings)
        pooled += ratings
    return {"overall": agreement(pooled), "criteria": per}


def review_report(store: Store, needed: int) -> dict[str, Any]:
    """Per queue: progress counts and agreement; the JSON of ``review report --json``."""
    counts = review_store.progress(store, needed)
    return {"reviews_per_item": needed,
            "queues": {q: {"title": QUEUE_TITLES[q], "progress": counts[q], "agreement": queue_agreement(store, q)}
                       for q in review_store.QUEUES}}
