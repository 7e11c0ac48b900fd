"""What flows through the generate graph: ids and scores only, never texts (those are in the store)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class GenerateState(TypedDict, total=False):
    run_id: str
    item_id: int
    candidate_ids: Annotated[list[int], operator.add]
    unique_ids: list[int]
    graded: Annotated[list[dict[str, Any]], operator.add]
    failures: Annotated[list[str], operator.add]  # failed calls: the item is not done until a re-run makes them
    unusable: Annotated[list[str], operator.add]  # answered, but nothing to use (an empty answer)
    paired: bool
    outcome: str


class SampleTask(TypedDict):
    """One candidate answer to write (fan-out over sample indexes)."""

    run_id: str
    item_id: int
    sample_index: int


class JudgeTask(TypedDict):
    """One distinct candidate to grade (fan-out over candidates)."""

    run_id: str
    item_id: int
    candidate_id: int
