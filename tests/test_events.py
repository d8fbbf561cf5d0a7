"""The event ring: resuming at its edges (what an SSE or gRPC Watch reader asks for)."""

from __future__ import annotations

import asyncio

from healthd.events import RING, Event, Ring


def filled(count: int) -> Ring:
    ring = Ring()
    for n in range(count):
        ring.emit("check", f"c{n}", "pass", "fail", "", 0.0)
    return ring


async def take(ring: Ring, since: int, count: int) -> list[Event]:
    """The first `count` events a reader resuming after `since` gets."""
    out: list[Event] = []
    async with asyncio.timeout(2):
        async for event in ring.changes(since):
            out.append(event)
            if len(out) == count:
                return out
    raise AssertionError("unreachable: changes() waits forever")


async def test_resuming_from_before_the_oldest_held_at_exact_capacity_replays_all() -> None:
    """Exactly `RING` events: a reader that saw none (since 0) gets all of them, no reset."""
    ring = filled(RING)
    events = await take(ring, 0, RING)
    assert [e.id for e in events] == list(range(1, RING + 1))
    assert all(e.kind == "check" for e in events)


async def test_one_past_capacity_the_evicted_id_resets() -> None:
    """`RING + 1` events: id 1 is gone, so since 0 is one reset, then the newest on."""
    ring = filled(RING + 1)
    first = (await take(ring, 0, 1))[0]
    assert (first.kind, first.id) == ("reset", RING + 1)


async def test_resuming_from_the_oldest_held_id_after_a_wrap_replays_the_rest() -> None:
    """After a wrap the reader that saw the id just before the oldest held resumes cleanly."""
    ring = filled(RING + 5)
    events = await take(ring, 5, RING)
    assert [e.id for e in events] == list(range(6, RING + 6))
    assert not [e for e in events if e.kind == "reset"]
