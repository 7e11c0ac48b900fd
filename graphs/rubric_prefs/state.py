"""What flows through the rubric-prefs graph: ids and S1/S2/S3 scores, never texts."""

from __future__ import annotations

from typing import TypedDict

from graphs.common.state import CandidatePairState, GradeTask

__all__ = ["GradeTask", "RubricPrefsState", "SampleTask"]


class RubricPrefsState(CandidatePairState, total=False):
    """Candidates, the distinct ones, their S1/S2/S3, the pair (``graphs.common.state``)."""


class SampleTask(TypedDict):
    """One answer of one generator model (fan-out over generators x samples)."""

    run_id: str
    item_id: int
    generator: int
    sample_index: int
