"""Database work for coroutines, off the event loop and batched: ``BatchQueue``.

Database calls made directly in async code block every other coroutine, and one statement and one
transaction per value costs far more CPU than one per batch (at a fast model server the per-request
ORM writes were most of carealign's CPU). Here values submitted while a batch is being written wait
and go together in the next one: under load a batch holds a whole wave, and when nothing else is
queued a lone value goes at once, so no call waits for a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

V = TypeVar("V")
R = TypeVar("R")


class BatchQueue(Generic[V, R]):
    """``await queue.submit(value)`` -> its result from ``work(values) -> results`` (same order, one
    result per value), run on ``executor`` (None: the event loop's default) a batch at a time, never
    two batches at once. If a batch fails, its values are retried one at a time so that one bad
    value costs only its own caller an error."""

    def __init__(self, work: Callable[[list[V]], list[R]], max_batch: int = 256, executor: Executor | None = None):
        self.work, self.max_batch, self.executor = work, max_batch, executor
        self._queue: list[tuple[V, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0

    async def submit(self, value: V) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._queue.append((value, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        # shielded: a cancelled caller does not cancel the write its batch shares with others
        return await asyncio.shield(fut)

    def _run(self, values: list[V]) -> list[R]:
        self.batches += 1
        results = self.work(values)
        if len(results) != len(values):
            raise RuntimeError(f"batch work returned {len(results)} results for {len(values)} values")
        return results

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            try:
                results = await loop.run_in_executor(self.executor, self._run, [value for value, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to the waiters
                if len(batch) == 1:
                    _settle(batch[0][1], exc=exc)
                else:
                    await self._one_by_one(batch)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                _settle(fut, result)

    async def _one_by_one(self, batch: list[tuple[V, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        for value, fut in batch:
            try:
                [result] = await loop.run_in_executor(self.executor, self._run, [value])
            except Exception as exc:  # noqa: BLE001 - only this waiter gets the error
                _settle(fut, exc=exc)
                continue
            _settle(fut, result)


def _settle(fut: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
