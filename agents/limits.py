"""Process-wide limits on LLM traffic: concurrency, requests per minute, tokens per minute.

LangGraph's ``max_concurrency`` applies per invocation and multiplies across ``abatch`` and fan-out,
so it cannot bound the load on a model server. Every engine in a process shares one ``Limiter``
instead (``shared_limiter``). asyncio primitives belong to one event loop, so the limiter re-binds
when a new loop starts using it (a CLI command runs everything in one loop: one limit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager


class TokenBucket:
    """Capacity ``per_minute``, refilled continuously; ``take`` waits until ``amount`` is free."""

    def __init__(self, per_minute: float):
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.rate = per_minute / 60.0
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, amount: float) -> None:
        amount = min(amount, self.capacity)  # a single oversized request must still pass eventually
        async with self._lock:
            while True:
                self._refill()
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate)

    def give_back(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


class Limiter:
    def __init__(self, concurrency: int, rpm: float | None = None, tpm: float | None = None):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency, self.rpm, self.tpm = concurrency, rpm, tpm
        self._loop: asyncio.AbstractEventLoop | None = None
        self.in_flight = 0
        self.peak_in_flight = 0

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._sem = asyncio.Semaphore(self.concurrency)
            self._rpm = TokenBucket(self.rpm) if self.rpm else None
            self._tpm = TokenBucket(self.tpm) if self.tpm else None

    @asynccontextmanager
    async def slot(self, est_tokens: int = 0) -> AsyncIterator[None]:
        """Hold one of the process's request slots (after rate limits allow the request)."""
        self._bind()
        if self._rpm:
            await self._rpm.take(1)
        if self._tpm and est_tokens:
            await self._tpm.take(est_tokens)
        async with self._sem:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1

    def settle_tokens(self, estimated: int, actual: int) -> None:
        """Correct the tokens-per-minute budget once the real usage is known."""
        if self._tpm and estimated > actual:
            self._tpm.give_back(estimated - actual)


class SlotPool:
    """Requests in flight per server, for the several servers (replicas) of one role.

    Each server has its own capacity (``None``: none of its own; the process's ``Limiter`` still
    bounds the total). ``acquire`` takes a slot on the server that ``pick`` chooses among those with a
    free slot, and waits while ``pick`` finds none (all full, or only unwanted ones free). Like
    ``Limiter`` it re-binds its asyncio state when a new event loop starts using it."""

    def __init__(self, capacities: Sequence[int | None], recheck_seconds: float = 1.0):
        if not capacities:
            raise ValueError("a slot pool needs at least one server")
        if any(c is not None and c < 1 for c in capacities):
            raise ValueError("a server's capacity must be at least 1")
        self.capacities = list(capacities)
        self.in_flight = [0] * len(self.capacities)
        self.peak_in_flight = [0] * len(self.capacities)
        self.recheck_seconds = recheck_seconds  # a waiter chooses again at least this often (rests end)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._changed = asyncio.Condition()
            self.in_flight = [0] * len(self.capacities)  # slots of a finished loop are gone with it

    def has_room(self, index: int) -> bool:
        cap = self.capacities[index]
        return cap is None or self.in_flight[index] < cap

    async def acquire(self, pick: Callable[[list[int]], int | None]) -> int:
        """A slot on the server ``pick(servers with room)`` returns; waits while it returns None."""
        self._bind()
        async with self._changed:
            while True:
                choice = pick([i for i in range(len(self.capacities)) if self.has_room(i)])
                if choice is not None:
                    self.in_flight[choice] += 1
                    self.peak_in_flight[choice] = max(self.peak_in_flight[choice], self.in_flight[choice])
                    return choice
                try:
                    await asyncio.wait_for(self._changed.wait(), self.recheck_seconds)
                except TimeoutError:
                    pass

    async def release(self, index: int) -> None:
        self._bind()
        self.in_flight[index] = max(0, self.in_flight[index] - 1)  # before any await: a cancel cannot leak it
        async with self._changed:
            self._changed.notify_all()


_SHARED: Limiter | None = None


def shared_limiter(concurrency: int, rpm: float | None = None, tpm: float | None = None) -> Limiter:
    """The process's one limiter; created on first use, re-created if its settings change."""
    global _SHARED
    if _SHARED is None or (_SHARED.concurrency, _SHARED.rpm, _SHARED.tpm) != (concurrency, rpm, tpm):
        _SHARED = Limiter(concurrency, rpm, tpm)
    return _SHARED
