"""A node's own fan-out (``graphs.common.fan_out``) means what LangGraph's ``Send`` meant: branches
run at once, updates merge in branch order, and the first failure stops the rest and is reported as
it is."""

from __future__ import annotations

import asyncio

import pytest

from graphs.common.fan_out import each, merged


def test_branches_run_at_once_and_results_keep_branch_order():
    async def run() -> list[int]:
        started: list[int] = []
        all_started = asyncio.Event()

        async def branch(i: int) -> int:
            started.append(i)
            if len(started) == 3:
                all_started.set()
            await asyncio.wait_for(all_started.wait(), 5)  # one at a time would never get here
            await asyncio.sleep(0.01 * (3 - i))  # the last branch finishes first
            return i

        return await each(branch(i) for i in range(3))

    assert asyncio.run(run()) == [0, 1, 2]


def slow_branch(cancelled: list[int]):
    """A branch that would run for 5 s and notes its index when it is cancelled."""

    async def slow(i: int) -> int:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    return slow


def test_the_first_failure_cancels_the_others_and_is_raised_unwrapped():
    cancelled: list[int] = []
    slow = slow_branch(cancelled)

    async def broken() -> int:
        await asyncio.sleep(0.01)
        raise KeyError("candidate 7 is not in the store")

    async def run() -> None:
        await each([slow(0), broken(), slow(2)])

    with pytest.raises(KeyError, match="candidate 7"):
        asyncio.run(run())
    assert sorted(cancelled) == [0, 2]


def test_cancelling_the_node_cancels_its_branches():
    cancelled: list[int] = []
    slow = slow_branch(cancelled)

    async def run() -> None:
        node = asyncio.ensure_future(each(slow(i) for i in range(3)))
        await asyncio.sleep(0.01)
        node.cancel()
        with pytest.raises(asyncio.CancelledError):
            await node

    asyncio.run(run())
    assert sorted(cancelled) == [0, 1, 2]


def test_updates_merge_as_the_reducers_would():
    updates = [{"candidate_ids": [3]}, {"failures": ["generate[m:1]: HTTP 500"]}, {"candidate_ids": [5]},
               {"unusable": ["generate[m:3]: empty answer"]}, {}]
    assert merged(updates) == {"candidate_ids": [3, 5], "failures": ["generate[m:1]: HTTP 500"],
                               "unusable": ["generate[m:3]: empty answer"]}
    assert merged([]) == {}
