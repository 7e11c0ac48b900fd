"""What flows through the checking graph: answer ids and verdicts, never texts (those are in the store)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class CheckState(TypedDict, total=False):
    run_id: str
    item_id: int
    round: int
    team: bool  # false when triage sent the text to one agent
    difficulty: str
    answers: Annotated[list[dict[str, Any]], operator.add]  # {id, round, agent, verdict, sentence_id}
    failures: Annotated[list[str], operator.add]
    final: dict[str, Any]
    outcome: str

