"""Helpers on candidates that several graphs share."""

from __future__ import annotations

from collections.abc import Iterable

from store import Store
from store.models import Candidate


def distinct_candidate_ids(store: Store, candidate_ids: Iterable[int]) -> list[int]:
    """Candidates with distinct normalised text, first of each kept in (model, sample) order: an
    answer that came twice is judged once and never paired with itself."""
    with store.session() as s:
        rows = sorted((s.get(Candidate, cid) for cid in set(candidate_ids)), key=lambda c: (c.model, c.sample_index))
        seen: set[str] = set()
        distinct = []
        for c in rows:
            if c.text_hash not in seen:
                seen.add(c.text_hash)
                distinct.append(c.id)
    return distinct
