"""What flows through the rubric-prefs graph: ids and S1/S2/S3 scores, never texts."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class RubricPrefsState(TypedDict, total=False):
    run_id: str
    item_id: int
    candidate_ids: Annotated[list[int], operator.add]
    distinct_ids: list[int]
    graded: Annotated[list[dict[str, Any]], operator.add]
    failures: Annotated[list[str], operator.add]  # failed calls: the item is not done until a re-run makes them
    unusable: Annotated[list[str], operator.add]  # answered, but nothing to use (an empty answer)
    paired: bool
    outcome: str


class SampleTask(TypedDict):
    """One answer of one generator model (fan-out over generators x samples)."""

    run_id: str
    item_id: int
    generator: int
    sample_index: int


class GradeTask(TypedDict):
    """One distinct candidate to grade against the item's rubric."""

    run_id: str
    item_id: int
    candidate_id: int
