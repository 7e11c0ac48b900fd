"""The state of a pair-producing graph (generate, rubric-prefs): candidates are written, exact
duplicates dropped, each distinct one graded, then the pair chosen. Ids and scores only; texts
live in the store."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class CandidatePairState(TypedDict, total=False):
    run_id: str
    item_id: int
    candidate_ids: Annotated[list[int], operator.add]
    distinct_ids: list[int]
    graded: Annotated[list[dict[str, Any]], operator.add]
    failures: Annotated[list[str], operator.add]  # failed calls: the item is not done until a re-run makes them
    unusable: Annotated[list[str], operator.add]  # answered, but nothing to use (an empty answer)
    paired: bool
    outcome: str

