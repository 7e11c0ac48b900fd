"""Who runs a job's claim loop: this process (the local executor, the default) or workers elsewhere.

``run_workflow`` records the run and queues the input once, then hands the claim loop to the
executor set in ``EXECUTOR`` (none: ``run_job`` in this process). A worker process that joins a run
its driver recorded (a Ray actor, ``ray_executor.py``) sets ``JOIN`` instead: its ``run_workflow``
then runs only the claim loop, under the driver's run id, and leaves the command with
``WorkerDone`` (what the command does after its jobs, reports and exports, is the driver's).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from store import Store


@dataclass
class ClaimJob:
    """One job's claim loop, as the driver hands it to an executor."""

    store: Store
    run_id: str
    job_key: str
    item_ids: list[int]
    engines: dict[str, Any]
    lease_seconds: float
    on_item: Callable[[Any], None] | None = None
    budget: Any = None  # runner.Budget


class JobExecutor(Protocol):
    async def run_claims(self, job: ClaimJob) -> Any:  # -> runner.JobSummary
        ...


EXECUTOR: ContextVar[JobExecutor | None] = ContextVar("carealign_executor", default=None)


@dataclass
class JoinedRun:
    """A worker's part in a run its driver recorded and queued: the ids, and what the driver may ask
    of it while its claim loop runs (live stats, stop claiming, stop)."""

    run_id: str
    job_key: str
    halt: str | None = None  # set by the driver (a budget spent over all workers): claim nothing more
    worker: str | None = None
    engines: dict[str, Any] = field(default_factory=dict)
    summary: Any = None  # runner.JobSummary, filled as items finish
    started: float = field(default_factory=time.monotonic)
    _loop: asyncio.AbstractEventLoop | None = None
    _task: asyncio.Task[Any] | None = None
    _stop_asked: bool = False

    def attach(self) -> None:
        """Called on the worker's event loop once its claim loop starts (``stop`` cancels it)."""
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        if self._stop_asked:
            self._task.cancel()

    def stop(self) -> None:
        """From another thread: cancel the claim loop; it hands its claims back before it ends."""
        self._stop_asked = True
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)

    def snapshot(self) -> dict[str, Any]:
        """What the driver combines: the worker's name, its items so far, usage and replicas. Called
        from another thread while the claim loop runs: copied, again if a dict changed meanwhile."""
        for _ in range(5):
            try:
                return {"worker": self.worker, "summary": copy.deepcopy(self.summary),
                        "usage": usage_by_engine(self.engines), "replicas": replicas_by_engine(self.engines),
                        "cpu_s": time.process_time()}
            except RuntimeError:  # dictionary changed size during iteration
                continue
        return {"worker": self.worker}


JOIN: ContextVar[JoinedRun | None] = ContextVar("carealign_join", default=None)


class WorkerDone(BaseException):  # noqa: N818 - not an error: how a worker leaves the command after its loop
    """Raised by ``run_workflow`` in a worker once its claim loop ended; carries ``JoinedRun.snapshot``.
    A BaseException so that the command's error handling passes it through unchanged."""

    def __init__(self, result: dict[str, Any]):
        super().__init__("worker done")
        self.result = result


def distinct_engines(engines: dict[str, Any]) -> dict[str, Any]:
    """Each engine once, under the first role it serves (one engine may serve several roles)."""
    seen: dict[int, str] = {}
    for role, engine in engines.items():
        seen.setdefault(id(engine), role)
    return {role: engines[role] for role in seen.values()}


def usage_by_engine(engines: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {role: e.usage.as_dict() for role, e in distinct_engines(engines).items() if hasattr(e, "usage")}


def replicas_by_engine(engines: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per-replica stats of every role whose backend spreads requests over replicas."""
    out: dict[str, list[dict[str, Any]]] = {}
    for role, engine in distinct_engines(engines).items():
        stats = getattr(getattr(engine, "backend", None), "stats", None)
        if callable(stats):
            out[role] = stats()
    return out
