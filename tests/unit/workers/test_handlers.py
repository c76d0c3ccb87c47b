"""Handler loading and per-shard delivery: order, errors, backlog, checkpoint, batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import msgspec
import pytest

from tests.unit.workers import sample_handlers
from workers.events import DISPATCH_NAMES, Event
from workers.handlers import (
    METHOD_CACHE_SIZE,
    TURN_EVERY,
    Delivery,
    Handler,
    HandlerLoadError,
    load_handler,
)
from workers.reporter import ShardCounters


def event(seq: int, name: str = "MESSAGE_CREATE", epoch: int = 1) -> Event:
    return Event(0, seq, name, msgspec.Raw(b'{"n":%d}' % seq), epoch)


def test_event_data_decodes_lazily_and_caches() -> None:
    e = event(3)
    assert e.raw == b'{"n":3}'
    first = e.data()
    assert first == {"n": 3}
    assert e.data() is first


async def test_loads_an_async_function() -> None:
    h = load_handler("tests.unit.workers.sample_handlers:function_handler")
    await h.handle(event(1, "READY"))
    assert sample_handlers.seen[-1] == "READY"


async def test_loads_an_object_and_calls_on_event_name_lowercase() -> None:
    h = load_handler("tests.unit.workers.sample_handlers:methods")
    await h.handle(event(1, "MESSAGE_CREATE"))
    await h.handle(event(2, "TYPING_START"))  # no method: skipped
    assert sample_handlers.seen[-1] == "method:MESSAGE_CREATE"


def test_loads_a_class_by_instantiating_it() -> None:
    h = load_handler("tests.unit.workers.sample_handlers:Batching")
    assert h.batch is not None


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "must look like"),
        ("tests.unit.workers.does_not_exist:x", "does not import"),
        ("tests.unit.workers.sample_handlers:missing", "has no attribute"),
        ("tests.unit.workers.sample_handlers:nothing", "no on_<event> methods"),
        ("tests.unit.workers.sample_handlers:sync_function", "must be an async function"),
        ("tests.unit.workers.sample_handlers:SyncMethod", "must be an async method"),
    ],
)
def test_unusable_handler_path_raises_a_one_line_error(path: str, message: str) -> None:
    with pytest.raises(HandlerLoadError) as err:
        load_handler(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


class Recorder:
    def __init__(self) -> None:
        self.seqs: list[int | None] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_on: set[int] = set()

    async def on_message_create(self, e: Event) -> None:
        await self.gate.wait()
        if e.seq in self.fail_on:
            raise RuntimeError(f"boom {e.seq}")
        self.seqs.append(e.seq)


async def run_delivery(delivery: Delivery) -> asyncio.Task[None]:
    return asyncio.ensure_future(delivery.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_events_are_delivered_in_order() -> None:
    rec = Recorder()
    d = Delivery(0, Handler(rec), ShardCounters(), maxsize=100)
    task = await run_delivery(d)
    for s in range(1, 51):
        d.push(event(s))
    async with asyncio.timeout(5):
        await d.wait_idle()
    assert rec.seqs == list(range(1, 51))
    await stop(task)


async def test_handler_exception_is_logged_counted_and_delivery_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()
    rec.fail_on = {2}
    counters = ShardCounters()
    d = Delivery(0, Handler(rec), counters)
    task = await run_delivery(d)
    with caplog.at_level(logging.ERROR):
        for s in (1, 2, 3):
            d.push(event(s))
        async with asyncio.timeout(5):
            await d.wait_idle()
    assert rec.seqs == [1, 3]
    assert counters.handler_errors == 1
    assert any("boom 2" in (r.exc_text or "") for r in caplog.records)
    assert d.checkpoint == (1, 3)
    await stop(task)


async def test_checkpoint_is_the_last_finished_event_not_the_last_received() -> None:
    rec = Recorder()
    rec.gate.clear()
    d = Delivery(0, Handler(rec), ShardCounters())
    task = await run_delivery(d)
    for s in (1, 2, 3):
        d.push(event(s))
    await asyncio.sleep(0)
    assert d.checkpoint is None
    assert d.backlog == 3
    rec.gate.set()
    async with asyncio.timeout(5):
        await d.wait_idle()
    assert d.checkpoint == (1, 3)
    await stop(task)


async def test_backlog_is_bounded_and_reports_full() -> None:
    rec = Recorder()
    rec.gate.clear()
    d = Delivery(0, Handler(rec), ShardCounters(), maxsize=3)
    task = await run_delivery(d)
    d.push(event(1))
    await asyncio.sleep(0)  # event 1 is now in the (blocked) handler
    for s in (2, 3, 4):
        d.push(event(s))
    assert d.full
    assert d.backlog == 4
    room = asyncio.ensure_future(d.wait_room())
    await asyncio.sleep(0)
    assert not room.done()
    rec.gate.set()
    async with asyncio.timeout(5):
        await room
    await stop(task)


async def test_batch_handler_gets_queued_events_in_order_up_to_batch_size() -> None:
    class Batch:
        def __init__(self) -> None:
            self.batches: list[list[int | None]] = []

        async def handle_batch(self, events: Sequence[Event]) -> None:
            self.batches.append([e.seq for e in events])

    b = Batch()
    d = Delivery(0, Handler(b), ShardCounters(), batch_size=4)
    for s in range(1, 11):
        d.push(event(s))
    task = await run_delivery(d)
    async with asyncio.timeout(5):
        await d.wait_idle()
    assert b.batches == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert d.checkpoint == (1, 10)
    await stop(task)


async def test_object_with_async_call_is_used_as_a_function_handler() -> None:
    class Callable_:
        def __init__(self) -> None:
            self.names: list[str] = []

        async def __call__(self, e: Event) -> None:
            self.names.append(e.name)

    target = Callable_()
    await Handler(target).handle(event(1, "READY"))
    assert target.names == ["READY"]


async def test_handler_raising_cancelled_error_is_counted_and_delivery_goes_on() -> None:
    class Cancels:
        def __init__(self) -> None:
            self.seqs: list[int | None] = []

        async def on_message_create(self, e: Event) -> None:
            if e.seq == 2:
                raise asyncio.CancelledError
            self.seqs.append(e.seq)

    handler = Cancels()
    counters = ShardCounters()
    d = Delivery(0, Handler(handler), counters)
    task = await run_delivery(d)
    for s in (1, 2, 3):
        d.push(event(s))
    async with asyncio.timeout(5):
        await d.wait_idle()
    assert handler.seqs == [1, 3]
    assert counters.handler_errors == 1
    assert not task.done()
    await stop(task)


async def test_cancelling_the_delivery_task_still_ends_it_while_a_handler_runs() -> None:
    class Blocks:
        def __init__(self) -> None:
            self.started = asyncio.Event()

        async def on_message_create(self, e: Event) -> None:
            self.started.set()
            await asyncio.Event().wait()

    handler = Blocks()
    d = Delivery(0, Handler(handler), ShardCounters())
    task = await run_delivery(d)
    d.push(event(1))
    async with asyncio.timeout(5):
        await handler.started.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


def test_push_asks_the_reader_to_hold_every_turn_size_events_before_the_backlog_is_full() -> None:
    d = Delivery(0, Handler(Recorder()), ShardCounters(), maxsize=10 * TURN_EVERY)
    for s in range(1, TURN_EVERY):
        d.push(event(s))
    assert not d.hold
    d.push(event(TURN_EVERY))
    assert d.hold and not d.full


async def test_holding_for_a_turn_leaves_room_for_the_reader() -> None:
    d = Delivery(0, Handler(Recorder()), ShardCounters(), maxsize=10 * TURN_EVERY)
    for s in range(1, TURN_EVERY + 1):
        d.push(event(s))
    room = asyncio.ensure_future(d.wait_room())
    await asyncio.sleep(0)
    assert room.done()  # a turn is a yield, not a wait: the backlog is far from full


def test_a_full_backlog_asks_the_reader_to_hold_even_below_the_turn_size() -> None:
    d = Delivery(0, Handler(Recorder()), ShardCounters(), maxsize=3)
    for s in (1, 2, 3):
        d.push(event(s))
    assert d.hold and d.full


async def test_the_method_cache_stays_bounded_under_100k_distinct_event_names() -> None:
    seen: list[str] = []

    class Bot:
        async def on_message_create(self, e: Event) -> None:
            seen.append(e.name)

        async def on_custom_thing(self, e: Event) -> None:
            seen.append(e.name)

    h = Handler(Bot())
    for i in range(100_000):
        await h.handle(event(i, f"HOSTILE_{i}"))
    assert len(h._methods) <= METHOD_CACHE_SIZE + len(DISPATCH_NAMES)
    # Lookups still work once the cache is full: documented and undocumented names alike.
    await h.handle(event(1, "MESSAGE_CREATE"))
    await h.handle(event(2, "CUSTOM_THING"))
    assert seen == ["MESSAGE_CREATE", "CUSTOM_THING"]
