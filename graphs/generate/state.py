"""What flows through the generate graph: ids and scores only, never texts (those are in the store)."""

from __future__ import annotations

from graphs.common.state import CandidatePairState


class GenerateState(CandidatePairState, total=False):
    """Candidates, the distinct ones, their judge scores, the pair (``graphs.common.state``)."""

