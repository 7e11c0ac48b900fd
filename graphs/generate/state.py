"""What flows through the generate graph: ids and scores only, never texts (those are in the store)."""

from __future__ import annotations

from typing import TypedDict

from graphs.common.state import CandidatePairState, GradeTask


class GenerateState(CandidatePairState, total=False):
    """Candidates, the distinct ones, their judge scores, the pair (``graphs.common.state``)."""


JudgeTask = GradeTask  # one distinct candidate for the judge


class SampleTask(TypedDict):
    """One candidate answer to write (fan-out over sample indexes)."""

    run_id: str
    item_id: int
    sample_index: int
