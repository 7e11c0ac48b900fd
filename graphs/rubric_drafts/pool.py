"""The few-shot pool of approved rubrics: the shipped examples and dataset rubrics join it as approved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import agents
from agents.roles import conversation_of
from agents.rubric import Origin
from benchmarks.datasets.instructions import read_rubric_instructions
from store import Store
from store import rubrics as rubric_store

SEED_POOL = Path(agents.__file__).resolve().parent / "rubrics" / "fewshot_seed.jsonl"


def seed_pool(store: Store, path: Path = SEED_POOL) -> int:
    """Put the shipped example rubrics in the pool (once: the store's unique key makes it idempotent)."""
    return import_rubrics(store, read_rubric_instructions(path))


def import_rubrics(store: Store, records: list[dict[str, Any]]) -> int:
    """Approved dataset rubrics (records from ``read_rubric_instructions`` that carry a rubric) join
    the pool; returns how many records had one."""
    n = 0
    with store.session() as s:
        for rec in records:
            payload = rec["payload"]
            if "rubric" not in payload or payload.get("rubric_id") is not None:
                continue
            rubric_store.add_rubric(s, instruction=conversation_of(payload), rubric=payload["rubric"],
                                    origin=Origin.DATASET.value, status=rubric_store.APPROVED, in_pool=True,
                                    reference=payload.get("reference"), language=payload.get("lang"))
            n += 1
    return n
