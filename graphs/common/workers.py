"""Who is working, and who is gone: worker names, the run heartbeat, and handing back the claims
and runs of processes that died.

A worker is named ``host:pid:run``. A process that starts a job first looks at every claim and
every ``running`` run: one whose process on this host no longer exists (``kill -9``, a crash, a
lost terminal) is gone, so its claims go back to the queue at once and its run is marked ``dead``.
A process on another host is judged by its heartbeat: a run not heard from for
``DEAD_AFTER_LEASES`` leases is dead, and its claims end with their lease. Notices about other
workers go to the command's console when one is listening (``NOTICES``), else to the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from store import Store
from store.queue import claimants, release
from store.records import mark_run_dead, running_runs, touch_run

log = logging.getLogger(__name__)
NOTICES: ContextVar[Callable[[str], None] | None] = ContextVar("carealign_notices", default=None)
DEAD_AFTER_LEASES = 3


def notify(message: str) -> None:
    sink = NOTICES.get()
    if sink is not None:
        sink(message)
    else:
        log.warning(message)


def host() -> str:
    return socket.gethostname()


def worker_name(run_id: str) -> str:
    return f"{host()}:{os.getpid()}:{run_id[:8]}"


def this_worker(lease_seconds: float) -> dict[str, Any]:
    return {"host": host(), "pid": os.getpid(), "lease_seconds": lease_seconds}


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _gone_here(worker_host: str, pid: Any) -> bool:
    return worker_host == host() and isinstance(pid, int) and pid != os.getpid() and not pid_alive(pid)


def run_is_dead(stats: dict[str, Any] | None, now: datetime | None = None) -> str | None:
    """Why a ``running`` run is known to be dead, or None (alive, or nothing to tell by)."""
    worker = (stats or {}).get("worker") or {}
    if not worker:
        return None
    if _gone_here(worker.get("host", ""), worker.get("pid")):
        return f"process {worker['pid']} on {worker['host']} is gone"
    if worker.get("host") == host():  # its process is alive here: a stalled loop is not a dead run
        return None
    beat = (stats or {}).get("heartbeat_at")
    lease = float(worker.get("lease_seconds") or 30.0)
    if beat:
        silent = ((now or datetime.now(UTC)) - datetime.fromisoformat(beat)).total_seconds()
        if silent > DEAD_AFTER_LEASES * max(lease, 10.0):
            return f"no heartbeat from {worker.get('host')}:{worker.get('pid')} for {silent:.0f} s"
    return None


def reap_dead_workers(store: Store) -> dict[str, int]:
    """Hand back the claims of this host's dead processes and mark dead runs ``dead``."""
    released, dead = 0, 0
    with store.session() as s:
        for worker in claimants(s):
            parts = worker.split(":")
            if len(parts) >= 2 and parts[1].isdigit() and _gone_here(parts[0], int(parts[1])):
                released += release(s, worker)
        for run in running_runs(s):
            why = run_is_dead(run.stats)
            if why:
                mark_run_dead(s, run.id, why)
                dead += 1
    if released or dead:
        notify(f"took over {released} items from dead workers; {dead} runs marked dead")
    return {"released": released, "dead_runs": dead}


class RunHeartbeat:
    """Touches the run every third of a lease while its job runs (``runs list`` tells live from dead)."""

    def __init__(self, store: Store, run_id: str, lease_seconds: float):
        self.store, self.run_id, self.every = store, run_id, lease_seconds / 3
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                with self.store.session() as s:
                    touch_run(s, self.run_id)
            except Exception as exc:  # noqa: BLE001 - a missed beat must not end the heartbeat
                notify(f"run heartbeat failed (retrying): {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
