"""Fan-out inside a node: an item's N answers, or its candidates' grades, run concurrently as one
graph step.

LangGraph can fan out with ``Send``, one task per branch, but each task costs about 0.5 ms of CPU
in LangGraph's own bookkeeping (``tests/perf/bench_orchestration.py``; ``docs/performance.md``):
more than the rest of carealign spends on the request itself against a fast model server. So a
node that asks several independent things runs them itself, with the same meaning as ``Send``:
every branch runs at once (the process-wide limiter, not the graph, bounds what is in flight),
their updates are merged in branch order, and the first branch that raises cancels the others and
is raised as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def each(branches: Iterable[Awaitable[T]]) -> list[T]:
    """Every branch at once; the results in branch order. The first exception cancels the branches
    still running and is raised unwrapped (not as an ``ExceptionGroup``: the item's failure reason
    stays the branch's own)."""
    tasks: list[asyncio.Future[T]] = []
    try:
        for branch in branches:  # inside the try: a branch that cannot start stops those already started
            tasks.append(asyncio.ensure_future(branch))
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def merged(updates: Iterable[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    """Branch updates as one, each list key concatenated in branch order: what LangGraph's
    ``operator.add`` reducers would have made of the same updates sent by separate tasks."""
    out: dict[str, list[Any]] = {}
    for update in updates:
        for key, values in update.items():
            out.setdefault(key, []).extend(values)
    return out
