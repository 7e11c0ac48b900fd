"""What the bench graphs share: one bench job and its bookkeeping.

A bench runs its graph over the items as one resumable job (items done by an earlier run of the
same job are not redone); each node stores its item's result in ``bench_results``
(``store.bench``). After the run the newest result of each input item, across the runs of the job,
is summarised and the summary stored as the run's ``summary`` row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphs.bench.configuration import BenchConfig
from graphs.common.runner import ItemOutcome, WorkflowReport, run_workflow
from store import Store
from store.bench import job_results, store_summary
from store.lookups import stored_item_ids

if TYPE_CHECKING:
    from store.models import BenchResult

OnItem = Callable[[ItemOutcome], None]
Summarise = Callable[[list["BenchResult"]], dict[str, Any]]


def bench_outcome(state: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """An item is done when no call on the way failed (a rejected or wrong answer is a result); with
    a failed call it is partial when an answer is already stored (a re-run grades it from the cache)."""
    failures = list(state.get("failures", []))
    if failures and state.get("candidate_ids"):
        return False, f"partial: answer stored, {len(failures)} call(s) after it failed", failures
    return not failures, state.get("outcome", "no outcome"), failures


@dataclass(frozen=True)
class BenchJob:
    """One bench job: where its results go (``bench`` names them in ``bench_results``), what
    identifies it (``job_key``), the model its summary is about, and the run kind
    [default: ``bench-<bench>``]."""

    store: Store
    bench: str
    job_key: str
    dataset: str
    model: str
    config: BenchConfig
    kind: str = ""


async def run_job(job: BenchJob, graph: Any, records: list[dict[str, Any]], run_config: dict[str, Any],
                  engines: dict[str, Any], *, redo: bool = False,
                  on_item: OnItem | None = None) -> tuple[WorkflowReport, list[int], list[BenchResult]]:
    """Run the graph over the items; returns the report, the input's item ids and the job's newest
    result rows for them. The run's config names the bench beside the ``[bench]`` settings."""
    report = await run_workflow(job.store, job.kind or f"bench-{job.bench}", job.job_key, graph, records,
                                job.dataset, {**run_config, "bench_name": job.bench}, bench_outcome, engines,
                                config=job.config,
                                redo=redo, on_item=on_item)
    item_ids = stored_item_ids(job.store, job.dataset, records)
    return report, item_ids, job_results(job.store, job.bench, job.job_key, item_ids)


async def run_bench(job: BenchJob, graph: Any, records: list[dict[str, Any]], run_config: dict[str, Any],
                    engines: dict[str, Any], summarise: Summarise, *, redo: bool = False,
                    on_item: OnItem | None = None) -> tuple[WorkflowReport, dict[str, Any] | None]:
    """What the scoring benches do: run the job, then summarise the newest result of each input item
    and store the summary (None when no item has a result)."""
    report, item_ids, rows = await run_job(job, graph, records, run_config, engines, redo=redo, on_item=on_item)
    if not rows:
        return report, None
    n_items = len(set(item_ids))
    summary = {**summarise(rows), "bench": job.bench, "model": job.model, "dataset": job.dataset, "n_items": n_items,
               "n_failed": n_items - len({r.item_id for r in rows})}
    store_summary(job.store, report.run_id, job.bench, job.model, summary, [r.id for r in rows])
    return report, summary
