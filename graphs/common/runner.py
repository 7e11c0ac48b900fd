"""Drive a per-item graph over a job's work queue: claim, run, complete, repeat.

Several processes (on PostgreSQL, several machines) can run the same job at once: each claims items
through the store and never processes an item another worker holds. Within a process, up to
``item_concurrency`` items are in flight (by default as many as the LLM limiter lets requests be in
flight, so ``--concurrency`` alone sets the throughput); the limiter bounds their calls together.

Claims follow their worker (``workers.py``): a heartbeat renews them every third of a short lease,
a worker starting on a host hands back at once the claims of that host's dead processes, and items
another live worker holds are waited for (reported) rather than silently left behind. A run's status
is the truth about its input: ``completed`` (every item done), ``completed_with_failures`` (every
item done, partial or failed, each with its reason), ``incomplete`` (some still pending or held
elsewhere), ``stopped`` (a budget ran out; resumable), ``interrupted`` or ``failed``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from graphs.common.config import PipelineConfig
from graphs.common.executor import EXECUTOR, JOIN, ClaimJob, JoinedRun, WorkerDone, replicas_by_engine
from graphs.common.workers import RunHeartbeat, notify, reap_dead_workers, this_worker, worker_name
from store import Store
from store.batching import BatchQueue
from store.queue import (
    CLAIMED,
    DONE,
    FAILED,
    PARTIAL,
    PENDING,
    claim,
    complete_many,
    enqueue,
    held_by_others,
    progress,
    release,
    renew,
    requeue_done,
    retry_failed,
)
from store.records import create_run, finish_run, touch_run, upsert_items
from store.run_reports import pairs_of_run

__all__ = ["CONTROLS", "Budget", "ItemOutcome", "JobSummary", "RunControls", "WorkflowReport", "run_job",
           "run_workflow", "worker_name"]


@dataclass
class ItemOutcome:
    item_id: int
    status: str  # done | partial | failed
    outcome: str
    failures: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == DONE


@dataclass
class FailureGroup:
    """Items that failed for the same reason (numbers masked): how many, and one to look at."""

    count: int
    example_item_id: int
    example: str


@dataclass
class JobSummary:
    done: int = 0
    partial: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)  # full outcome, numbers masked as '#'
    failures: dict[str, FailureGroup] = field(default_factory=dict)  # by first failure reason, masked
    seconds: float = 0.0
    interrupted: bool = False
    stopped: str | None = None  # the budget that stopped the job
    lost: int = 0  # items finished after another worker had taken them over (not counted above)
    replicas: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per role, when it has replicas

    def add(self, res: ItemOutcome) -> None:
        if res.status == DONE:
            self.done += 1
        elif res.status == PARTIAL:
            self.partial += 1
        else:
            self.failed += 1
        key = res.outcome.split(":")[0]
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        reason = _mask(res.outcome)
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if res.status != DONE:
            first = res.failures[0] if res.failures else res.outcome
            group = self.failures.setdefault(_mask(first), FailureGroup(0, res.item_id, first))
            group.count += 1

    def merge(self, other: JobSummary) -> None:
        """Add another worker's summary of the same job (the seconds stay this one's: wall time)."""
        self.done, self.partial, self.failed = self.done + other.done, self.partial + other.partial, \
            self.failed + other.failed
        self.lost += other.lost
        for mine, theirs in ((self.outcomes, other.outcomes), (self.reasons, other.reasons)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        for key, group in other.failures.items():
            if key in self.failures:
                self.failures[key].count += group.count
            else:
                self.failures[key] = FailureGroup(group.count, group.example_item_id, group.example)
        self.interrupted = self.interrupted or other.interrupted
        self.stopped = self.stopped or other.stopped

    def top_failures(self, n: int = 5) -> list[tuple[str, FailureGroup]]:
        return sorted(self.failures.items(), key=lambda kv: (-kv[1].count, kv[0]))[:n]


def _mask(text: str) -> str:
    return re.sub(r"\b\d+(\.\d+)?\b", "#", text)


@dataclass(frozen=True)
class Budget:
    """Stop a job cleanly once its engines have used this many tokens or dollars (None: no limit)."""

    max_tokens: int | None = None
    max_cost_usd: float | None = None

    def spent(self, engines: dict[str, Any]) -> str | None:
        usages = [e.usage for e in {id(e): e for e in engines.values()}.values()]
        tokens = sum(u.prompt_tokens + u.completion_tokens for u in usages)
        cost = sum(u.cost_usd for u in usages)
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"token budget spent ({tokens:,} >= {self.max_tokens:,})"
        if self.max_cost_usd is not None and cost >= self.max_cost_usd:
            return f"cost budget spent (${cost:.4f} >= ${self.max_cost_usd:.4f})"
        return None


@dataclass(frozen=True)
class RunControls:
    """What the command asks of every job it runs (set once by the command line for the whole
    command, so jobs run by any pipeline obey it): budgets over the command's engines."""

    budget: Budget | None = None


NO_CONTROLS = RunControls()
CONTROLS: ContextVar[RunControls] = ContextVar("carealign_run_controls", default=NO_CONTROLS)  # noqa: B039 - frozen

Judge = Callable[[dict[str, Any]], tuple[bool, str, list[str]]]


LOST = "lost"


def item_status(ok: bool, outcome: str) -> str:
    """What a finished graph says about its item: done, or partial (some work stored, the outcome
    says 'partial: ...') or failed."""
    return DONE if ok else PARTIAL if outcome.startswith("partial") else FAILED


async def run_job(
    store: Store, graph: Any, run_id: str, job_key: str, judge_state: Judge, *,
    item_concurrency: int = 8, lease_seconds: float = 30.0, engines: dict[str, Any] | None = None,
    budget: Budget | None = None, wait_for_others: bool = True,
    on_item: Callable[[ItemOutcome], None] | None = None,
) -> JobSummary:
    """Process every claimable item of ``job_key``; ``judge_state`` turns a final state into
    (ok, outcome, failures). Items whose graph raised are failed with the exception as reason."""
    worker = worker_name(run_id)
    summary = JobSummary()
    start = time.perf_counter()
    running: dict[asyncio.Task[ItemOutcome], int] = {}
    poll = min(2.0, lease_seconds / 3)
    waited_for: set[str] = set()
    completions = BatchQueue(lambda outcomes: complete_many(store, worker, outcomes))

    async def process(work_id: int, item_id: int) -> ItemOutcome:
        try:
            state = await graph.ainvoke({"run_id": run_id, "item_id": item_id})
            ok, outcome, failures = judge_state(state)
        except Exception as exc:  # noqa: BLE001 - one broken item must not stop the job
            ok, outcome, failures, state = False, "error", [f"{type(exc).__name__}: {exc}"], {}
        status = item_status(ok, outcome)
        # items finishing together are completed in one transaction (store.queue.complete_many)
        kept = await completions.submit((work_id, None if ok else ("; ".join(failures)[:4000] or outcome), status))
        if not kept:  # our lease ran out and another worker took the item over: its result counts, not ours
            return ItemOutcome(item_id, LOST, "lost claim", [], state)
        return ItemOutcome(item_id, status, outcome, failures, state)

    async def renew_leases() -> None:
        """Heartbeat: keep our claims fresh so a long item is never taken over while it runs."""
        while True:
            await asyncio.sleep(lease_seconds / 3)
            if running:
                try:
                    with store.session() as s:
                        renew(s, list(running.values()), worker)
                except Exception as exc:  # noqa: BLE001 - a missed renewal must not end the heartbeat
                    notify(f"lease renewal failed (retrying): {type(exc).__name__}: {exc}")

    heartbeat = asyncio.create_task(renew_leases())
    try:
        while True:
            if summary.stopped is None and budget is not None and engines is not None:
                summary.stopped = budget.spent(engines)
            free = item_concurrency - len(running)
            if free > 0 and summary.stopped is None:  # top up; also takes over claims whose lease ended
                with store.session() as s:
                    claimed = claim(s, job_key, worker, free, lease_seconds, run_id)
                for work_id, item_id in claimed:
                    running[asyncio.create_task(process(work_id, item_id))] = work_id
            if not running:
                if summary.stopped is not None or not wait_for_others:
                    break
                with store.session() as s:
                    holds = held_by_others(s, job_key, worker)
                if not holds:
                    break
                for h in holds:
                    if h.worker not in waited_for:
                        waited_for.add(h.worker)
                        left = max(0.0, lease_seconds - (time.time() - h.renewed_at.timestamp()))
                        notify(f"{h.items} items held by worker {h.worker}, lease ends in {left:.0f} s unless "
                               "renewed: waiting for them")
                await asyncio.sleep(poll)
                continue
            finished, _ = await asyncio.wait(running, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                running.pop(task)
                res = task.result()
                if res.status == LOST:
                    summary.lost += 1
                    continue
                summary.add(res)
                if on_item:
                    on_item(res)
    except BaseException as exc:  # Ctrl-C, cancellation, or the store failing: stop the items in flight
        summary.interrupted = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
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
    status: str = "completed"
    counts: dict[str, int] = field(default_factory=dict)  # the input's items by status at the end

    @property
    def finished(self) -> bool:
        """Every item of the input came to an end (done, partial or failed, each with its reason)."""
        return self.status in ("completed", "completed_with_failures")


def final_status(summary: JobSummary, counts: dict[str, int]) -> str:
    if counts.get(PENDING, 0) + counts.get(CLAIMED, 0):
        return "stopped" if summary.stopped else "incomplete"
    return "completed_with_failures" if counts.get(FAILED, 0) + counts.get(PARTIAL, 0) else "completed"


def default_item_concurrency(engines: dict[str, Any]) -> int:
    """As many items in flight as the process may have LLM requests in flight (each item has at
    least one request in flight at a time), so ``--concurrency`` alone sets the throughput."""
    limits = [e.limiter.concurrency for e in engines.values() if getattr(e, "limiter", None) is not None]
    return max(limits) if limits else 8


async def run_workflow(
    store: Store, kind: str, job_key: str, graph: Any, records: list[dict[str, Any]], dataset: str,
    run_config: dict[str, Any], judge_state: Judge, engines: dict[str, Any], *, config: PipelineConfig,
    redo: bool = False, on_item: Callable[[ItemOutcome], None] | None = None,
) -> WorkflowReport:
    """What every per-item workflow does around its graph: record the run, store the inputs, queue
    them under the job (done items skipped, failed and partial ones retried, all redone with
    ``redo``), run the graph over the queue, and close the run with the status its input is in.
    The claim loop's settings come from the pipeline's ``config``; budgets from ``CONTROLS``; who runs
    the loop from ``EXECUTOR`` (unset: this process). In a worker that joined its driver's run
    (``JOIN``) only the claim loop runs (``work_in_joined_run``)."""
    joined = JOIN.get()
    if joined is not None:
        await work_in_joined_run(joined, store, job_key, graph, judge_state, engines, config)
    executor = EXECUTOR.get()
    lease_seconds = config.lease_seconds
    reap_dead_workers(store)
    with store.session() as s:
        run_id = create_run(s, kind, run_config, job_key=job_key, worker=this_worker(lease_seconds))
        item_ids = upsert_items(s, dataset, records)
        enqueue(s, job_key, item_ids)
        retry_failed(s, job_key)
        if redo:
            requeue_done(s, job_key)
    with store.session() as s:  # the first beat once the (possibly long) input transaction is committed
        touch_run(s, run_id)
    status, error = "failed", None
    summary = JobSummary()
    new_pairs = 0
    counts: dict[str, int] = {}
    beat = RunHeartbeat(store, run_id, lease_seconds)
    beat.start()
    try:
        if executor is None:
            summary = await run_job(store, graph, run_id, job_key, judge_state,
                                    item_concurrency=config.item_concurrency or default_item_concurrency(engines),
                                    lease_seconds=lease_seconds, engines=engines, budget=CONTROLS.get().budget,
                                    wait_for_others=config.wait_for_other_workers, on_item=on_item)
            summary.replicas = replicas_by_engine(engines)
        else:  # workers elsewhere run the claim loop; their usage is added to these engines' as they report
            summary = await executor.run_claims(ClaimJob(store, run_id, job_key, list(item_ids), engines,
                                                         lease_seconds, on_item, CONTROLS.get().budget))
        with store.session() as s:
            counts = progress(s, job_key, item_ids)
        status = final_status(summary, counts)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)) else "failed"
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        beat.stop()
        usage = {role: engine.usage.as_dict() for role, engine in engines.items()}
        with store.session() as s:
            new_pairs = pairs_of_run(s, run_id)
            stats = {"items": len(set(item_ids)), "done": summary.done, "partial": summary.partial,
                     "failed": summary.failed, "outcomes": summary.outcomes, "reasons": summary.reasons,
                     "failures": {k: g.__dict__ for k, g in summary.top_failures(20)}, "input_items": counts,
                     "stopped": summary.stopped, "seconds": round(summary.seconds, 3), "new_pairs": new_pairs,
                     "usage": usage}
            if summary.replicas:
                stats["replicas"] = summary.replicas
            finish_run(s, run_id, status, stats, error or summary.stopped)
    return WorkflowReport(run_id, job_key, len(set(item_ids)), summary, new_pairs, usage, status, counts)


class _JoinedBudget:
    """A worker's budget: its own engines' (as in a local run), or the driver's word that the budget
    of all workers together is spent."""

    def __init__(self, joined: JoinedRun, budget: Budget | None):
        self.joined, self.budget = joined, budget

    def spent(self, engines: dict[str, Any]) -> str | None:
        return self.joined.halt or (self.budget.spent(engines) if self.budget is not None else None)


async def work_in_joined_run(joined: JoinedRun, store: Store, job_key: str, graph: Any, judge_state: Judge,
                             engines: dict[str, Any], config: PipelineConfig) -> None:
    """A worker's whole part in its driver's run: hand back the claims of dead processes on this host,
    run the claim loop under the driver's run id, then leave the command (``WorkerDone``)."""
    if joined.job_key != job_key:
        raise ValueError(f"this worker built job {job_key} but its driver queued job {joined.job_key}: the "
                         "worker's settings, input files or prompt templates differ from the driver's")
    joined.worker, joined.engines, joined.summary = worker_name(joined.run_id), engines, JobSummary()
    joined.attach()
    reap_dead_workers(store)
    summary = await run_job(store, graph, joined.run_id, job_key, judge_state,
                            item_concurrency=config.item_concurrency or default_item_concurrency(engines),
                            lease_seconds=config.lease_seconds, engines=engines,
                            budget=_JoinedBudget(joined, CONTROLS.get().budget),
                            wait_for_others=config.wait_for_other_workers, on_item=joined.summary.add)
    joined.summary = summary
    raise WorkerDone(joined.snapshot())
