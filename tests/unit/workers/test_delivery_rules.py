"""Delivery's checkpoint and backlog edges, each pinned by a mutant of workers/handlers.py
that tests/unit/workers/test_handlers.py let through (`make mutate`): the checkpoint of a batch is
its last event, a failed batch still counts as done, delivery wakes up again after going
idle, and the backlog counts the event in the handler."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from workers.events import Event
from workers.handlers import Delivery, Handler
from workers.reporter import ShardCounters


def event(seq: int, epoch: int = 1) -> Event:
    return Event(0, seq, "MESSAGE_CREATE", msgspec.Raw(b"{}"), epoch)


class Gate:
    """A per-event handler that holds each event until the test lets it through."""

    def __init__(self) -> None:
        self.seen: list[int | None] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def __call__(self, e: Event) -> None:
        self.seen.append(e.seq)
        self.entered.set()
        await self.gate.wait()


class Batches:
    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.batches: list[list[int | None]] = []
        self.fail_with = fail_with
        self.called = asyncio.Event()

    async def handle_batch(self, events: Sequence[Event]) -> None:
        self.batches.append([e.seq for e in events])
        self.called.set()
        if self.fail_with is not None:
            raise self.fail_with


async def drain(d: Delivery) -> asyncio.Task[None]:
    task = asyncio.create_task(d.run())
    async with asyncio.timeout(5):
        await d.wait_idle()
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_batchs_checkpoint_is_its_last_event() -> None:
    d = Delivery(0, Handler(Batches()), ShardCounters(), batch_size=10)
    for s in (1, 2, 3):
        d.push(event(s))
    task = await drain(d)
    assert d.checkpoint == (1, 3) and d.backlog == 0 and d.delivered == 3
    await stop(task)


async def test_a_failed_batch_is_done_and_delivery_goes_on() -> None:
    handler = Batches(fail_with=RuntimeError("boom"))
    counters = ShardCounters()
    d = Delivery(0, Handler(handler), counters, batch_size=2)
    for s in (1, 2, 3):
        d.push(event(s))
    task = await drain(d)
    assert handler.batches == [[1, 2], [3]]
    assert d.checkpoint == (1, 3) and counters.handler_errors == 2
    await stop(task)


async def test_a_batch_raising_cancelled_error_is_a_failure_not_the_end_of_delivery() -> None:
    handler = Batches(fail_with=asyncio.CancelledError())
    counters = ShardCounters()
    d = Delivery(0, Handler(handler), counters, batch_size=1)
    for s in (1, 2):
        d.push(event(s))
    task = await drain(d)
    assert handler.batches == [[1], [2]] and not task.done()
    assert counters.handler_errors == 2
    await stop(task)


async def test_batch_delivery_wakes_up_for_events_pushed_after_it_went_idle() -> None:
    handler = Batches()
    d = Delivery(0, Handler(handler), ShardCounters(), batch_size=10)
    d.push(event(1))
    task = await drain(d)  # event 1 handled, then the delivery task sleeps
    handler.called.clear()
    d.push(event(2))
    async with asyncio.timeout(5):
        await handler.called.wait()
        await d.wait_idle()
    assert handler.batches == [[1], [2]] and d.delivered == 2
    await stop(task)


async def test_the_event_in_the_handler_counts_in_the_backlog_after_an_idle_wake() -> None:
    handler = Gate()
    handler.gate.set()
    d = Delivery(0, Handler(handler), ShardCounters())
    d.push(event(1))
    task = await drain(d)  # event 1 handled, then the delivery task sleeps
    handler.gate.clear()
    handler.entered.clear()
    d.push(event(2))
    async with asyncio.timeout(5):
        await handler.entered.wait()
    assert d.backlog == 1
    handler.gate.set()
    async with asyncio.timeout(5):
        await d.wait_idle()
    assert d.backlog == 0 and d.delivered == 2 and d.checkpoint == (1, 2)
    await stop(task)
