"""Drive a per-item graph over a job's work queue: claim, run, complete, repeat.

Several processes (on PostgreSQL, several machines) can run the same job at once: each claims items
through the store and never processes an item another worker holds. Within a process, up to
``item_concurrency`` items are in flight; the LLM limiter bounds the calls they make together.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from store import Store
from store.queue import claim, complete, enqueue, release, renew, requeue_done, retry_failed
from store.records import create_run, finish_run, upsert_items
from store.run_reports import pairs_of_run


@dataclass
class ItemOutcome:
    item_id: int
    ok: bool
    outcome: str
    failures: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobSummary:
    done: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)  # full outcome, numbers masked as '#'
    seconds: float = 0.0
    interrupted: bool = False


def worker_name(run_id: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{run_id[:8]}"


Judge = Callable[[dict[str, Any]], tuple[bool, str, list[str]]]


async def run_job(
    store: Store, graph: Any, run_id: str, job_key: str, judge_state: Judge, *,
    item_concurrency: int = 8, lease_seconds: float = 600.0,
    on_item: Callable[[ItemOutcome], None] | None = None,
) -> JobSummary:
    """Process every claimable item of ``job_key``; ``judge_state`` turns a final state into
    (ok, outcome, failures). Items whose graph raised are failed with the exception as reason."""
    worker = worker_name(run_id)
    summary = JobSummary()
    start = time.perf_counter()
    running: dict[asyncio.Task[ItemOutcome], int] = {}

    async def process(work_id: int, item_id: int) -> ItemOutcome:
        try:
            state = await graph.ainvoke({"run_id": run_id, "item_id": item_id})
            ok, outcome, failures = judge_state(state)
        except Exception as exc:  # noqa: BLE001 - one broken item must not stop the job
            ok, outcome, failures, state = False, "error", [f"{type(exc).__name__}: {exc}"], {}
        with store.session() as s:
            complete(s, work_id, worker, None if ok else "; ".join(failures)[:4000] or outcome)
        return ItemOutcome(item_id, ok, outcome, failures, state)

    async def renew_leases() -> None:
        """Heartbeat: keep our claims fresh so a long item is never taken over while it runs."""
        while True:
            await asyncio.sleep(lease_seconds / 3)
            if running:
                with store.session() as s:
                    renew(s, list(running.values()), worker)

    heartbeat = asyncio.create_task(renew_leases())
    try:
        while True:
            free = item_concurrency - len(running)
            if free > 0:  # top up; also picks up items whose dead worker's lease expired
                with store.session() as s:
                    claimed = claim(s, job_key, worker, free, lease_seconds, run_id)
                for work_id, item_id in claimed:
                    running[asyncio.create_task(process(work_id, item_id))] = work_id
            if not running:
                break
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                running.pop(task)
                res = task.result()
                summary.done += res.ok
                summary.failed += not res.ok
                key = res.outcome.split(":")[0]
                summary.outcomes[key] = summary.outcomes.get(key, 0) + 1
                reason = re.sub(r"\b\d+(\.\d+)?\b", "#", res.outcome)
                summary.reasons[reason] = summary.reasons.get(reason, 0) + 1
                if on_item:
                    on_item(res)
    except (asyncio.CancelledError, KeyboardInterrupt):
        summary.interrupted = True
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        with store.session() as s:
            release(s, worker, list(running.values()))
        raise
    finally:
        heartbeat.cancel()
        summary.seconds = time.perf_counter() - start
    return summary


@dataclass
class WorkflowReport:
    run_id: str
    job_key: str
    items: int
    summary: JobSummary
    new_pairs: int
    usage: dict[str, Any]


async def run_workflow(
    store: Store, kind: str, job_key: str, graph: Any, records: list[dict[str, Any]], dataset: str,
    run_config: dict[str, Any], judge_state: Judge, engines: dict[str, Any], *, item_concurrency: int = 8,
    lease_seconds: float = 600.0, redo: bool = False, on_item: Callable[[ItemOutcome], None] | None = None,
) -> WorkflowReport:
    """What every per-item workflow does around its graph: record the run, store the inputs, queue
    them under the job (done items skipped, failed ones retried, all redone with ``redo``), run
    the graph over the queue, and close the run with its status and stats (also when interrupted)."""
    with store.session() as s:
        run_id = create_run(s, kind, run_config, job_key=job_key)
        item_ids = upsert_items(s, dataset, records)
        enqueue(s, job_key, item_ids)
        retry_failed(s, job_key)
        if redo:
            requeue_done(s, job_key)
    status, error = "failed", None
    summary = JobSummary()
    new_pairs = 0
    try:
        summary = await run_job(store, graph, run_id, job_key, judge_state, item_concurrency=item_concurrency,
                                lease_seconds=lease_seconds, on_item=on_item)
        status = "completed" if summary.failed == 0 else "completed_with_failures"
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)) else "failed"
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        usage = {role: engine.usage.as_dict() for role, engine in engines.items()}
        with store.session() as s:
            new_pairs = pairs_of_run(s, run_id)
            stats = {"items": len(set(item_ids)), "done": summary.done, "failed": summary.failed,
                     "outcomes": summary.outcomes, "reasons": summary.reasons, "seconds": round(summary.seconds, 3),
                     "new_pairs": new_pairs, "usage": usage}
            finish_run(s, run_id, status, stats, error)
    return WorkflowReport(run_id, job_key, len(set(item_ids)), summary, new_pairs, usage)
