"""The bound on heavy Docker calls: at most `limit` at once, starts before removals, cancellation safe."""

from __future__ import annotations

import asyncio

import pytest

from trafficshift.gate import Gate


async def test_at_most_limit_hold_it_and_the_rest_go_by_priority_then_arrival() -> None:
    gate = Gate(2)
    inside = peak = 0
    order: list[str] = []
    release = asyncio.Event()

    async def call(name: str, priority: int) -> None:
        nonlocal inside, peak
        async with gate.slot(priority):
            inside += 1
            peak = max(peak, inside)
            order.append(name)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(call("first", 0)), asyncio.create_task(call("second", 0))]
    await asyncio.sleep(0)
    # Queued while both slots are held: removals (1) first in line, then starts (0).
    for name, priority in [("remove-a", 1), ("start-a", 0), ("remove-b", 1), ("start-b", 0)]:
        tasks.append(asyncio.create_task(call(name, priority)))
        await asyncio.sleep(0)
    assert gate.held == 2
    assert gate.waiting == 4
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2
    assert order == ["first", "second", "start-a", "start-b", "remove-a", "remove-b"]
    assert gate.held == 0


async def test_a_cancelled_waiter_gives_its_turn_on() -> None:
    gate = Gate(1)
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot():
            held.set()
            await release.wait()

    first = asyncio.create_task(holder())
    await held.wait()
    cancelled = asyncio.create_task(gate.slot().__aenter__())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    release.set()
    await first
    # The slot is free again, though a dead waiter was queued: a new caller gets it at once.
    async with asyncio.timeout(1), gate.slot():
        assert gate.held == 1
    assert gate.held == 0
    assert gate.waiting == 0


def test_a_gate_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Gate(0)


async def test_a_waiter_cancelled_just_as_its_turn_came_passes_the_slot_on() -> None:
    gate = Gate(1)
    entered: list[str] = []

    async def call(name: str) -> None:
        async with gate.slot():
            entered.append(name)

    holder = gate.slot()
    await holder.__aenter__()
    unlucky = asyncio.create_task(call("unlucky"))
    next_one = asyncio.create_task(call("next"))
    await asyncio.sleep(0)
    await holder.__aexit__(None, None, None)  # hands the slot to `unlucky`...
    unlucky.cancel()  # ...which is cancelled before it runs again
    await asyncio.gather(unlucky, next_one, return_exceptions=True)
    assert entered == ["next"]
    assert gate.held == 0
