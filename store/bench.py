"""The ``bench_results`` table as the benches use it: per-item results, a job's newest results, run
summaries.

Per-item rows are keyed ``item:<item id>`` (or a finer key) within (run, bench); a run's summary is
the row ``summary``. A bench job resumes like every workflow (items done by an earlier run of the
same job are not redone), so a summary reads the newest result of each input item across the runs
of its job, and only for the items of this input set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from store.db import Store, insert_ignore
from store.models import BenchResult, Run

SUMMARY = "summary"


def item_key(item_id: int | None, suffix: str | None = None) -> str:
    return f"item:{item_id}" + (f":{suffix}" if suffix else "")


def store_result(store: Store, run_id: str, bench: str, item_id: int | None, model: str | None,
                 metrics: dict[str, Any], llm_call_ids: Sequence[int | None], result_key: str | None = None) -> None:
    """One result row (idempotent per run, bench and key); call ids that were not recorded are dropped."""
    with store.session() as s:
        insert_ignore(s, BenchResult, [{
            "run_id": run_id, "bench": bench, "result_key": result_key or item_key(item_id), "item_id": item_id,
            "model": model, "metrics": metrics, "llm_call_ids": [c for c in llm_call_ids if c is not None],
        }], ["run_id", "bench", "result_key"])


def store_summary(store: Store, run_id: str, bench: str, model: str | None, metrics: dict[str, Any],
                  result_ids: Sequence[int]) -> None:
    """The run's summary row; ``metrics`` records which result rows it was computed from."""
    store_result(store, run_id, bench, None, model, {**metrics, "result_ids": list(result_ids)}, [], SUMMARY)


def job_results(store: Store, bench: str, job_key: str, item_ids: Sequence[int]) -> list[BenchResult]:
    """The newest per-item rows of ``bench`` written by any run of ``job_key`` for these items,
    in the order of ``item_ids`` (several rows per item when a bench keys results finer). Detached
    rows: read their columns."""
    wanted = set(item_ids)
    with store.session() as s:
        rows = s.scalars(select(BenchResult).join(Run, Run.id == BenchResult.run_id)
                         .where(Run.job_key == job_key, BenchResult.bench == bench, BenchResult.result_key != SUMMARY)
                         .order_by(Run.started_at, BenchResult.id)).all()
        s.expunge_all()
    newest: dict[str, BenchResult] = {}
    for r in rows:
        if r.item_id in wanted:
            newest[r.result_key] = r
    order = {item: n for n, item in enumerate(item_ids)}
    return sorted(newest.values(), key=lambda r: (order[r.item_id], r.result_key))


def run_summaries(store: Store, run_ids: Sequence[str]) -> list[tuple[Run, BenchResult]]:
    """The summary rows of the given runs (run ids may be given as unique prefixes), in the order
    asked. A run without a bench summary is an error naming it."""
    out = []
    with store.session() as s:
        for wanted in run_ids:
            runs = s.scalars(select(Run).where(Run.id.startswith(wanted))).all()
            if len(runs) != 1:
                raise ValueError(f"run {wanted!r}: " + ("no such run" if not runs else
                                                        f"{len(runs)} runs start with it; give more characters"))
            row = s.scalars(select(BenchResult).where(BenchResult.run_id == runs[0].id,
                                                      BenchResult.result_key == SUMMARY)).first()
            if row is None:
                raise ValueError(f"run {runs[0].id} has no bench summary (is it a `carealign bench` run?)")
            out.append((runs[0], row))
        s.expunge_all()
    return out
