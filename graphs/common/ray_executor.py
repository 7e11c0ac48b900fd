"""The Ray executor: a job's claim loop run by N Ray actors against the shared PostgreSQL store.

The driver (the ``carealign`` command) records the run and queues the input once; then N actors
(``ClaimWorker``) each run the same claim loop for the same run id (``runner.work_in_joined_run``),
so the queue's rules hold as for N processes started by hand: every item exactly once, claims
renewed by a heartbeat, a dead worker's claims taken over. An actor receives no live object: only
``work``, a picklable description of the command (the command line's ``carealign.executors
.CommandReplay``: settings, command name and options, which of its jobs), from which it opens its
own store and engines by the command's own code path.

The driver polls the store for the job's progress and the actors for their usage, items and
per-replica stats (one progress bar, one summary). An actor that dies is restarted by Ray
(``[ray] max_restarts``; its ``run`` call is retried there); the driver hands the dead process's
claims back at once (Ray's word that it is gone) instead of waiting for their lease. Ctrl-C asks
every actor to stop (each hands its claims back) and kills those that do not within
``[ray] stop_seconds``. Ray is imported only here, and only when this executor is used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.replicas import merge_replica_stats
from graphs.common.executor import JOIN, ClaimJob, JoinedRun, WorkerDone, distinct_engines
from graphs.common.runner import JobSummary
from graphs.common.workers import notify
from store.queue import DONE, FAILED, FINISHED, PARTIAL, progress, release

FINISHED_STATES = FINISHED


class RayConfig(BaseModel):
    """``[ray]``: the Ray executor (``--executor ray --workers N [--ray-address ...]``)."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves for each worker actor")
    num_gpus: float = Field(0.0, ge=0, description="GPUs Ray reserves for each worker actor")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources per worker "
                                        "actor, e.g. {node_type = 1}")
    max_restarts: int = Field(3, ge=-1, description="times Ray restarts a worker actor that died (-1: always); "
                              "its claim loop is run again in the new process")
    local_num_cpus: int | None = Field(None, ge=1, description="CPUs of the Ray instance started on this machine "
                                       "when no --ray-address is given; unset = Ray's default (all)")
    runtime_env: dict[str, Any] = Field(default_factory=dict, description="Ray runtime_env for the workers "
                                        "(e.g. env_vars, working_dir); carealign must be installed on every node")
    poll_seconds: float = Field(0.5, gt=0, description="how often the driver reads progress and worker stats")
    stop_seconds: float = Field(15.0, gt=0, description="after Ctrl-C, how long workers get to hand their claims "
                                "back before they are killed")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install 'carealign[ray]' (or --executor local)") from None
    return ray


def connect(address: str | None, config: RayConfig) -> bool:
    """Join the Ray cluster at ``address`` ('auto': the one started here by ``ray start``), or start a
    local one; True when this call initialised Ray (the caller shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": True,
                              "logging_level": logging.WARNING}
    if address is None and config.local_num_cpus:
        kwargs["num_cpus"] = config.local_num_cpus
    if config.runtime_env:
        kwargs["runtime_env"] = config.runtime_env
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError) as exc:
        raise ValueError(f"cannot reach the Ray cluster at {address or 'a new local instance'}: {exc}") from None
    return True


class ClaimWorker:
    """A Ray actor: runs ``work`` (the command, as a worker of the driver's run) on one thread while
    ``stats`` and ``stop`` answer on another (the actor is created with ``max_concurrency`` > 1)."""

    def __init__(self) -> None:
        self.joined: JoinedRun | None = None

    def run(self, work: Callable[[JoinedRun], dict[str, Any]], run_id: str, job_key: str) -> dict[str, Any]:
        self.joined = joined = JoinedRun(run_id, job_key)
        token = JOIN.set(joined)
        try:
            return work(joined)
        except WorkerDone as done:
            return done.result
        finally:
            JOIN.reset(token)

    def stats(self) -> dict[str, Any]:
        return self.joined.snapshot() if self.joined is not None else {"worker": None}

    def halt(self, why: str) -> None:
        """Claim nothing more (the budget of all workers together is spent); items in flight finish."""
        if self.joined is not None:
            self.joined.halt = why

    def stop(self) -> None:
        if self.joined is not None:
            self.joined.stop()


class _Combined:
    """What the driver knows of the workers: the newest report of every worker process (a restarted
    actor is a new process, so its earlier self keeps its last report), added up."""

    def __init__(self, job: ClaimJob):
        self.job = job
        self.reports: dict[str, dict[str, Any]] = {}  # worker name -> newest snapshot or final result
        self.names: dict[int, str] = {}  # actor index -> its current worker name
        self.base = {role: dict(e.usage.as_dict()) for role, e in distinct_engines(job.engines).items()}
        self.errors: list[str] = []
        self.interrupted = False

    def report(self, index: int, snapshot: dict[str, Any]) -> None:
        name = snapshot.get("worker")
        if not name:
            return
        previous = self.names.get(index)
        if previous and previous != name:  # Ray restarted the actor: the old process is gone
            self.hand_back(previous, f"worker actor {index} was restarted")
        self.names[index] = name
        self.reports[name] = snapshot
        self.apply_usage()

    def hand_back(self, worker: str, why: str) -> None:
        with self.job.store.session() as s:
            n = release(s, worker)
        if n:
            notify(f"{why}: its {n} claimed items went back to the queue")

    def apply_usage(self) -> None:
        """The driver's engines count what every worker's engines did (progress line, run stats, budget)."""
        for role, engine in distinct_engines(self.job.engines).items():
            total = dict(self.base.get(role, {}))
            for rep in self.reports.values():
                for key, value in (rep.get("usage") or {}).get(role, {}).items():
                    total[key] = total.get(key, 0) + value
            for key, value in total.items():
                setattr(engine.usage, key, value)

    def summary(self, seconds: float) -> Any:
        out = JobSummary()
        for rep in self.reports.values():
            if rep.get("summary") is not None:
                out.merge(rep["summary"])
        roles = {role for rep in self.reports.values() for role in (rep.get("replicas") or {})}
        out.replicas = {role: merge_replica_stats([rep["replicas"][role] for rep in self.reports.values()
                                                   if role in (rep.get("replicas") or {})]) for role in sorted(roles)}
        out.seconds = seconds
        out.interrupted = out.interrupted or self.interrupted
        return out


class RayExecutor:
    """Runs each job's claim loop on ``workers`` Ray actors (see the module docstring). ``work`` is
    the picklable description of the command that every actor runs as a worker of this job."""

    def __init__(self, work: Any, workers: int, config: RayConfig):
        self.work, self.workers, self.config = work, workers, config

    def for_job(self, work: Any) -> RayExecutor:
        """The executor for one job of the command: ``work`` tells the workers which."""
        return RayExecutor(work, self.workers, self.config)

    def _actors(self, run_id: str) -> list[Any]:
        ray = import_ray()
        cls = ray.remote(ClaimWorker)
        options = {"num_cpus": self.config.num_cpus, "num_gpus": self.config.num_gpus,
                   "resources": self.config.resources or None, "max_restarts": self.config.max_restarts,
                   "max_task_retries": self.config.max_restarts, "max_concurrency": 4}
        return [cls.options(name=f"carealign-{run_id[:8]}-{i}", **options).remote() for i in range(self.workers)]

    async def run_claims(self, job: ClaimJob) -> Any:
        ray = import_ray()
        started = time.perf_counter()
        combined = _Combined(job)
        with job.store.session() as s:
            before = progress(s, job.job_key, job.item_ids)
        shown = _finished(before)
        actors = self._actors(job.run_id)
        runs = {asyncio.wrap_future(a.run.remote(self.work, job.run_id, job.job_key).future()): i
                for i, a in enumerate(actors)}
        halted = False
        try:
            while runs:
                done, _ = await asyncio.wait(runs, timeout=self.config.poll_seconds)
                for fut in done:
                    index = runs.pop(fut)
                    self._finished_actor(combined, index, fut)
                await self._poll(actors, [i for i in runs.values()], combined)
                with job.store.session() as s:
                    counts = progress(s, job.job_key, job.item_ids)
                now_finished = _finished(counts)
                if job.on_item is not None:
                    for _ in range(max(0, now_finished - shown)):
                        job.on_item(_PROGRESS)
                shown = max(shown, now_finished)
                if not halted and job.budget is not None:
                    why = job.budget.spent(job.engines)
                    if why:  # every worker stops claiming; items in flight finish
                        halted = True
                        _halt(actors, list(runs.values()), why)
        except BaseException:
            combined.interrupted = True
            await self._stop(actors, runs, combined)
            raise
        finally:
            for a in actors:
                ray.kill(a)
        if combined.errors and not combined.reports:
            raise ValueError(f"every Ray worker failed; the first: {combined.errors[0]}")
        with job.store.session() as s:
            after = progress(s, job.job_key, job.item_ids)
        summary = combined.summary(time.perf_counter() - started)
        # a worker killed between two reports took its last items' count along: the store has them
        summary.done = max(summary.done, after.get(DONE, 0) - before.get(DONE, 0))
        summary.partial = max(summary.partial, after.get(PARTIAL, 0) - before.get(PARTIAL, 0))
        summary.failed = max(summary.failed, after.get(FAILED, 0) - before.get(FAILED, 0))
        return summary

    def _finished_actor(self, combined: _Combined, index: int, fut: asyncio.Future[Any]) -> None:
        ray = import_ray()
        try:
            result = fut.result()
        except ray.exceptions.RayActorError as exc:  # dead for good (restarts used up)
            name = combined.names.get(index)
            if name:
                combined.hand_back(name, f"worker actor {index} died")
            combined.errors.append(f"worker actor {index} died: {exc}")
            notify(f"worker actor {index} died and was not restarted: {type(exc).__name__}")
            return
        except Exception as exc:  # noqa: BLE001 - one failed worker must not end the others
            combined.errors.append(f"{type(exc).__name__}: {exc}")
            notify(f"worker actor {index} failed: {type(exc).__name__}: {exc}")
            return
        if result.get("error"):
            combined.errors.append(result["error"])
            notify(f"worker actor {index} failed: {result['error']}")
            return
        combined.report(index, result)

    async def _poll(self, actors: list[Any], running: list[int], combined: _Combined) -> None:
        """Ask the running actors for their stats; one that does not answer in time is skipped."""
        if not running:
            return
        futs = {asyncio.wrap_future(actors[i].stats.remote().future()): i for i in running}
        done, pending = await asyncio.wait(futs, timeout=max(1.0, self.config.poll_seconds))
        for fut in pending:
            fut.cancel()
        for fut in done:
            try:
                combined.report(futs[fut], fut.result())
            except Exception:  # noqa: BLE001 - an actor restarting or dying: its run call tells
                continue

    async def _stop(self, actors: list[Any], runs: dict[asyncio.Future[Any], int], combined: _Combined) -> None:
        """Ctrl-C: each actor stops and hands its claims back; the ones still running after
        ``stop_seconds`` are killed and their claims handed back here."""
        for i in runs.values():
            try:
                actors[i].stop.remote()
            except Exception:  # noqa: BLE001 - an actor already gone
                continue
        if runs:
            done, _ = await asyncio.wait(runs, timeout=self.config.stop_seconds)
            for fut in done:
                try:
                    res = fut.result()
                    if isinstance(res, dict) and res.get("worker"):
                        combined.reports[res["worker"]] = res
                except BaseException:  # noqa: BLE001 - interrupted workers end any way they can
                    pass
        for index, name in combined.names.items():
            combined.hand_back(name, f"worker actor {index} stopped")


_PROGRESS = None  # what the progress callback gets per item a worker finished (it only counts)


def _finished(counts: dict[str, int]) -> int:
    return sum(counts.get(s, 0) for s in FINISHED_STATES)


def _halt(actors: list[Any], running: list[int], why: str) -> None:
    for i in running:
        try:
            actors[i].halt.remote(why)
        except Exception:  # noqa: BLE001 - an actor already gone
            continue


__all__ = ["ClaimWorker", "RayConfig", "RayExecutor", "connect", "import_ray"]
