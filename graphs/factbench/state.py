"""What flows through the factbench build graph: ids, statuses, injections and decisions, never
texts (the variants are candidates in the store)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class BuildState(TypedDict, total=False):
    run_id: str
    item_id: int
    variants: Annotated[list[dict[str, Any]], operator.add]  # status, error type, candidate id, injection
    decisions: Annotated[list[dict[str, Any]], operator.add]  # {candidate_id, accepted}
    failures: Annotated[list[str], operator.add]
    outcome: str


class InjectTask(TypedDict):
    """One error type to inject into the source (fan-out over the chosen types)."""

    run_id: str
    item_id: int
    index: int
    error_type: str


class FilterTask(TypedDict):
    """One verified variant for the panel (fan-out over variants)."""

    run_id: str
    item_id: int
    variant: dict[str, Any]
