"""Several servers (replicas) of one model behind one role: a ``ChatBackend`` that spreads requests.

``--base-url`` (and ``--judge-base-url``) may name several replicas, given several times or as a
comma list. Each request goes to the replica with the fewest requests in flight (ties: the one that
served fewest), within each replica's capacity (``[replicas] capacity``; the process's limiter still
bounds the total). A replica that fails ``failures_to_rest`` requests in a row (errors worth retrying:
timeouts, refused connections, 429, 5xx) is rested for ``rest_seconds``, doubled each time it fails
again right after a rest, up to ``rest_max_seconds``; after its rest it is tried with one request
(nothing else is sent to it until that one answers), and an answer ends the back-off. A request
that fails on one replica is sent at once to another that is not resting (the engine's retries with
back-off take over when none is left). Requests, failures and latency are counted per replica
(``stats``): the command prints them and stores them with the run.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from agents.backends import BackendRequest, BackendResponse, ChatBackend, safe_http_url
from agents.errors import LLMUnavailable, PermanentLLMError, TransientLLMError
from agents.limits import SlotPool


class ReplicaSettings(BaseModel):
    """``[replicas]``: how requests are spread over the replicas of a role (``--base-url A,B``)."""

    model_config = ConfigDict(extra="forbid")

    capacity: int | None = Field(None, ge=1, description="requests in flight per replica of a role, per "
                                 "worker process; unset = no cap of its own (--concurrency bounds the total)")
    failures_to_rest: int = Field(3, ge=1, description="a replica that fails this many requests in a row "
                                  "(timeouts, connection errors, 429, 5xx) is rested")
    rest_seconds: float = Field(10.0, gt=0, description="first rest of a failing replica; doubled each time it "
                                "fails again right after a rest")
    rest_max_seconds: float = Field(300.0, gt=0, description="longest rest of a failing replica")


def split_urls(value: str | Sequence[str] | None) -> list[str]:
    """Replica URLs from a comma list, a list of comma lists, or None (no URL)."""
    if value is None:
        return []
    parts = [value] if isinstance(value, str) else list(value)
    return [u.strip() for p in parts for u in p.split(",") if u.strip()]


def safe_urls(value: str | Sequence[str] | None) -> str | None:
    """A comma list of replica URLs without credentials or query strings, safe to store and print."""
    urls = split_urls(value)
    return ",".join(safe_http_url(u) or "" for u in urls) if urls else None


@dataclass
class ReplicaStats:
    url: str  # safe to print: no credentials
    requests: int = 0
    ok: int = 0
    failures: int = 0
    rests: int = 0
    latency_ms_sum: float = 0.0
    latency_ms_max: float = 0.0
    in_row: int = 0  # failures in a row
    rest_until: float = 0.0  # monotonic time its rest ends (0: not resting)
    next_rest: float = 0.0  # the length of its next rest
    probing: bool = False  # its rest ended: one request decides whether it is back
    last_error: str | None = None

    def as_dict(self, now: float) -> dict[str, Any]:
        answered = self.ok + self.failures
        state = (f"resting {self.rest_until - now:.0f} s" if self.rest_until > now else
                 "probing" if self.probing else "ok")
        return {"url": self.url, "requests": self.requests, "ok": self.ok, "failures": self.failures,
                "rests": self.rests, "latency_ms_mean": round(self.latency_ms_sum / answered, 1) if answered else None,
                "latency_ms_max": round(self.latency_ms_max, 1), "state": state, "last_error": self.last_error}


class ReplicaBackend:
    """One role's replicas as one backend (see the module docstring). ``base_url`` is the comma list
    of the replicas' safe URLs (what a run records as the role's server)."""

    def __init__(self, backends: Sequence[ChatBackend], settings: ReplicaSettings | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if not backends:
            raise ValueError("a replica backend needs at least one replica")
        self.backends = list(backends)
        self.settings = settings or ReplicaSettings()
        self.clock = clock
        self.replicas = [ReplicaStats(safe_http_url(b.base_url) or f"replica-{i + 1}",
                                      next_rest=self.settings.rest_seconds) for i, b in enumerate(self.backends)]
        # what a run records as the role's server; each URL keeps a path, so that the list reads back
        self.base_url = ",".join(r.url if urlsplit(r.url).path else f"{r.url}/" for r in self.replicas)
        self.pool = SlotPool([self.settings.capacity] * len(self.backends))

    # -- choosing -------------------------------------------------------------------------------
    def _resting(self, i: int, now: float) -> bool:
        r = self.replicas[i]
        if r.rest_until > now:
            return True
        if r.rest_until:  # its rest is over: one request decides
            r.rest_until, r.probing = 0.0, True
        return r.probing and self.pool.in_flight[i] > 0

    def _pick(self, room: list[int], tried: set[int]) -> int | None:
        now = self.clock()
        wanted = [i for i in range(len(self.backends)) if i not in tried]
        healthy = [i for i in wanted if not self._resting(i, now)]
        if healthy:
            free = [i for i in healthy if i in room]
            return min(free, key=lambda i: (self.pool.in_flight[i], self.replicas[i].requests, i)) if free else None
        # every replica left is resting: the one whose rest ends first (the engine backs off between tries)
        free = [i for i in wanted if i in room]
        return min(free, key=lambda i: (self.replicas[i].rest_until, i)) if free else None

    # -- accounting -----------------------------------------------------------------------------
    def _answered(self, i: int, started: float) -> None:
        r = self.replicas[i]
        ms = (self.clock() - started) * 1000.0
        r.ok += 1
        r.latency_ms_sum += ms
        r.latency_ms_max = max(r.latency_ms_max, ms)
        r.in_row, r.probing, r.next_rest = 0, False, self.settings.rest_seconds

    def _failed(self, i: int, started: float, reason: str) -> None:
        r = self.replicas[i]
        ms = (self.clock() - started) * 1000.0
        r.failures += 1
        r.latency_ms_sum += ms
        r.latency_ms_max = max(r.latency_ms_max, ms)
        r.in_row += 1
        r.last_error = reason[:200]
        if r.probing or r.in_row >= self.settings.failures_to_rest:
            self._rest(i)

    def _rest(self, i: int) -> None:
        r = self.replicas[i]
        r.rest_until = self.clock() + r.next_rest
        r.next_rest = min(r.next_rest * 2, self.settings.rest_max_seconds)
        r.rests += 1
        r.in_row, r.probing = 0, False

    def stats(self) -> list[dict[str, Any]]:
        """Per replica: url, requests, ok, failures, rests, latency (mean, max ms), state, last error."""
        now = self.clock()
        return [r.as_dict(now) for r in self.replicas]

    # -- the ChatBackend protocol ----------------------------------------------------------------
    async def complete(self, req: BackendRequest) -> BackendResponse:
        tried: set[int] = set()
        while True:
            i = await self.pool.acquire(lambda room: self._pick(room, tried))
            tried.add(i)
            self.replicas[i].requests += 1
            started = self.clock()
            try:
                resp = await self.backends[i].complete(req)
            except TransientLLMError as exc:
                self._failed(i, started, exc.reason)
                now = self.clock()
                if not any(j not in tried and not self._resting(j, now) for j in range(len(self.backends))):
                    raise
                continue  # another replica that is not resting: at once
            except PermanentLLMError:  # a 4xx answer is the same on every replica: not the replica's fault
                self._answered(i, started)
                raise
            finally:
                await self.pool.release(i)
            self._answered(i, started)
            return resp

    async def check(self) -> None:
        """Fail fast when no replica answers; a replica that does not answer starts rested."""
        results = await asyncio.gather(*(b.check() for b in self.backends), return_exceptions=True)
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
        if len(failed) == len(self.backends):
            if isinstance(failed[0][1], Exception):
                raise failed[0][1]
            raise LLMUnavailable(f"no replica of {self.base_url} answers")
        for i, exc in failed:
            self.replicas[i].last_error = str(exc)[:200]
            self._rest(i)
            warnings.warn(f"model server replica {self.replicas[i].url} does not answer ({exc}): rested for "
                          f"{self.settings.rest_seconds:g} s, then tried again", stacklevel=2)

    async def list_models(self) -> list[str]:
        now = self.clock()
        order = sorted(range(len(self.backends)), key=lambda i: self._resting(i, now))
        last: Exception | None = None
        for i in order:
            lister = getattr(self.backends[i], "list_models", None)
            if lister is None:
                continue
            try:
                return await lister()
            except LLMUnavailable as exc:
                last = exc
        if last is not None:
            raise last
        return []

    async def aclose(self) -> None:
        await asyncio.gather(*(b.aclose() for b in self.backends), return_exceptions=True)


def merge_replica_stats(rows: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-replica stats of several worker processes added up by URL (state: the worst one)."""
    merged: dict[str, dict[str, Any]] = {}
    for worker_rows in rows:
        for row in worker_rows:
            m = merged.setdefault(row["url"], {"url": row["url"], "requests": 0, "ok": 0, "failures": 0, "rests": 0,
                                               "latency_ms_sum": 0.0, "latency_ms_max": 0.0, "state": "ok",
                                               "last_error": None})
            for key in ("requests", "ok", "failures", "rests"):
                m[key] += row[key]
            answered = row["ok"] + row["failures"]
            m["latency_ms_sum"] += (row["latency_ms_mean"] or 0.0) * answered
            m["latency_ms_max"] = max(m["latency_ms_max"], row["latency_ms_max"])
            if row["state"] != "ok":
                m["state"] = row["state"]
            m["last_error"] = row["last_error"] or m["last_error"]
    out = []
    for m in merged.values():
        answered = m["ok"] + m["failures"]
        total = m.pop("latency_ms_sum")
        out.append({**m, "latency_ms_mean": round(total / answered, 1) if answered else None})
    return out
