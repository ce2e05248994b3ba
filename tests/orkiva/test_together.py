"""Together: the calls of one event-loop turn for one key are made as one batch (the reads of the
waiters one post woke), each caller gets its own result or the batch's error."""
from __future__ import annotations

import asyncio

from orkiva.mcp.waiting import Together


def test_calls_of_one_turn_are_one_batch_and_each_gets_its_own_result():
    batches: list[tuple[str, list[int]]] = []

    async def batch(key, items):
        batches.append((key, list(items)))
        await asyncio.sleep(0)
        return [item * 10 for item in items]

    async def scenario():
        together = Together(batch)
        first = await asyncio.gather(*(together.run("a", i) for i in range(5)), together.run("b", 7))
        later = await together.run("a", 9)  # another turn: a batch of its own
        return first, later

    first, later = asyncio.run(scenario())
    assert first == [0, 10, 20, 30, 40, 70] and later == 90
    assert batches == [("a", [0, 1, 2, 3, 4]), ("b", [7]), ("a", [9])]


def test_a_failed_batch_fails_each_call_and_a_caller_that_left_is_skipped():
    async def failing(key, items):
        raise RuntimeError("database away")

    async def scenario():
        together = Together(failing)
        results = await asyncio.gather(together.run("a", 1), together.run("a", 2), return_exceptions=True)
        slow = Together(lambda key, items: asyncio.sleep(0.05, [len(items)] * len(items)))
        leaving = asyncio.create_task(slow.run("a", 1))
        staying = asyncio.create_task(slow.run("a", 2))
        await asyncio.sleep(0.01)
        leaving.cancel()
        return results, await staying, await asyncio.gather(leaving, return_exceptions=True)

    results, stayed, left = asyncio.run(scenario())
    assert [str(r) for r in results] == ["database away", "database away"]
    assert stayed == 2 and isinstance(left[0], asyncio.CancelledError)
