"""What flows through the rubric-draft graph: the rubric's id and status, never its text."""

from __future__ import annotations

from typing import TypedDict


class DraftState(TypedDict, total=False):
    run_id: str
    item_id: int
    rubric_id: int
    status: str
    outcome: str
    failures: list[str]
