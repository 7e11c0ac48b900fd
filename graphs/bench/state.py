"""What flows through the bench graphs: ids and outcomes only (texts and verdicts are in the store)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class BenchItemState(TypedDict, total=False):
    """One bench item: its result is stored by the node that made it; the state says how it went."""

    run_id: str
    item_id: int
    failures: Annotated[list[str], operator.add]
    outcome: str


class RubricBenchState(BenchItemState, total=False):
    candidate_ids: list[int]  # score mode: the answer being graded


class StrategyBenchState(BenchItemState, total=False):
    """One dialogue turn whose strategy is chosen (generate) or labelled (classify)."""


class MedicationBenchState(BenchItemState, total=False):
    """One medication question, answered and (open answers) graded."""


class MedicationBuildState(BenchItemState, total=False):
    """One drug label: the items written from it (status only) and the calls that failed."""

    built: Annotated[list[dict[str, Any]], operator.add]


class WriteTask(TypedDict):
    """One item to write from a label: a ChiDrug task in one format (fan-out over tasks x formats)."""

    run_id: str
    item_id: int
    task: str
    format: str
