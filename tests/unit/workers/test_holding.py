"""A reshard's new shard set holds its events until the switch (``workers.holding``):
bounded, oldest dropped first, and at the switch only the recent ones are delivered."""

from __future__ import annotations

from workers.clock import FakeClock
from workers.events import Event
from workers.holding import HeldEvents


def _event(seq: int) -> Event:
    return Event(0, seq, "MESSAGE_CREATE", b"{}")


def test_holding_keeps_only_the_newest_events_up_to_its_bound() -> None:
    held = HeldEvents(3, FakeClock())
    for seq in range(1, 6):
        held.push(_event(seq))
    out: list[Event] = []
    assert held.release(10.0, out.append) == (3, 2)
    assert [e.seq for e in out] == [3, 4, 5]
    assert len(held) == 0


async def test_the_switch_delivers_only_events_within_the_overlap() -> None:
    clock = FakeClock()
    held = HeldEvents(100, clock)
    held.push(_event(1))
    await clock.advance(5.0)
    held.push(_event(2))
    await clock.advance(1.5)
    held.push(_event(3))
    out: list[Event] = []
    # the old set delivered seq 1 long ago; 2 and 3 may have been delivered by it too
    assert held.release(2.0, out.append) == (2, 1)
    assert [e.seq for e in out] == [2, 3]
