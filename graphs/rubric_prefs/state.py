"""What flows through the rubric-prefs graph: ids and S1/S2/S3 scores, never texts."""

from __future__ import annotations

from graphs.common.state import CandidatePairState

__all__ = ["RubricPrefsState"]


class RubricPrefsState(CandidatePairState, total=False):
    """Candidates, the distinct ones, their S1/S2/S3, the pair (``graphs.common.state``)."""
