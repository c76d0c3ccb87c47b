"""``shardmgr.handlers.JsonlSink`` when the file cannot be written: nothing is lost, nothing
is written twice, lines stay whole, and the checkpoint never passes an unwritten batch."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from collections.abc import Awaitable
from pathlib import Path

import msgspec
import pytest

from shardmgr.handlers import JsonlSink, jsonl_line
from workers.clock import FakeClock
from workers.events import Event
from workers.handlers import Delivery, Handler
from workers.reporter import ShardCounters


def event(seq: int, shard_id: int = 0) -> Event:
    return Event(shard_id, seq, "MESSAGE_CREATE", msgspec.Raw(b'{"content":"hi","n":%d}' % seq))


def lines_of(*events: Event) -> bytes:
    return b"".join(jsonl_line(e) for e in events)


class FlakyWrite:
    """``os.write`` that fails with ``error`` the next ``failures`` times, optionally writing
    only ``short`` bytes first, and sets ``failed`` on every failure."""

    def __init__(
        self, failures: int = 0, short: int | None = None, error: int = errno.ENOSPC
    ) -> None:
        self.failures = failures
        self.short = short
        self.error = error
        self.failed = asyncio.Event()
        self.calls = 0

    def __call__(self, fd: int, data: memoryview) -> int:
        self.calls += 1
        if self.short is not None:
            short, self.short = self.short, None
            return os.write(fd, data[:short])
        if self.failures > 0:
            self.failures -= 1
            self.failed.set()
            raise OSError(self.error, os.strerror(self.error))
        return os.write(fd, data)


async def first_failure(write: FlakyWrite) -> None:
    async with asyncio.timeout(5):
        await write.failed.wait()


class RecordingClock(FakeClock):
    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await super().sleep(seconds)


async def run_out(clock: FakeClock, work: Awaitable[None]) -> None:
    """Run ``work`` to completion, moving the fake clock past every backoff it waits on."""
    task = asyncio.ensure_future(work)
    async with asyncio.timeout(10):
        while not task.done():
            await clock.advance(5.0)
    await task


async def test_failed_writes_are_retried_until_every_line_is_written_once(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    clock = FakeClock()
    write = FlakyWrite(failures=3)
    sink = JsonlSink(str(path), clock=clock, write=write)
    await run_out(clock, sink.handle_batch([event(1), event(2), event(3)]))
    await sink.close()
    assert write.calls == 4
    assert path.read_bytes() == lines_of(event(1), event(2), event(3))


async def test_short_write_then_failure_writes_only_the_rest_and_lines_stay_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    clock = FakeClock()
    write = FlakyWrite(failures=2, short=17)
    sink = JsonlSink(str(path), clock=clock, write=write)
    await run_out(clock, sink.handle_batch([event(1), event(2)]))
    await sink.close()
    assert path.read_bytes() == lines_of(event(1), event(2))
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [1, 2]


async def test_retry_delay_doubles_from_the_base_up_to_the_cap(tmp_path: Path) -> None:
    clock = RecordingClock()
    sink = JsonlSink(str(tmp_path / "e.jsonl"), clock=clock, write=FlakyWrite(failures=9))
    await run_out(clock, sink.handle_batch([event(1)]))
    await sink.close()
    assert clock.slept == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


async def test_one_warning_per_failure_streak_and_one_with_the_failure_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    write = FlakyWrite(failures=4, error=errno.EIO)
    sink = JsonlSink(str(tmp_path / "e.jsonl"), clock=clock, write=write)
    with caplog.at_level(logging.WARNING, logger="shardmgr.handlers"):
        await run_out(clock, sink.handle_batch([event(1), event(2)]))
    await sink.close()
    records = [r for r in caplog.records if r.name == "shardmgr.handlers"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING]
    first, last = (r.__dict__["extra_fields"] for r in records)
    assert first["errno"] == errno.EIO and first["events"] == 2
    assert last["failures"] == 4


async def test_shards_of_one_worker_do_not_interleave_while_one_batch_retries(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    clock = FakeClock()
    write = FlakyWrite(failures=1, short=5)
    sink = JsonlSink(str(path), clock=clock, write=write)
    first = asyncio.ensure_future(sink.handle_batch([event(1, shard_id=0), event(2, shard_id=0)]))
    await first_failure(write)
    second = sink.handle_batch([event(7, shard_id=1)])
    await run_out(clock, second)
    await first
    await sink.close()
    assert path.read_bytes() == lines_of(event(1, 0), event(2, 0), event(7, 1))


async def test_another_process_waits_for_the_rest_of_an_incomplete_write(tmp_path: Path) -> None:
    # Two sinks on one path hold two open file descriptions, which flock keeps apart just as
    # it does two worker processes.
    path = tmp_path / "shared.jsonl"
    clock = FakeClock()
    write = FlakyWrite(failures=3, short=9)
    failing = JsonlSink(str(path), clock=clock, write=write)
    other = JsonlSink(str(path), clock=clock)
    first = asyncio.ensure_future(failing.handle_batch([event(1, shard_id=0)]))
    await first_failure(write)
    await run_out(clock, other.handle_batch([event(5, shard_id=3)]))
    await first
    await failing.close()
    await other.close()
    assert path.read_bytes() == lines_of(event(1, 0), event(5, 3))


async def test_events_wait_in_the_backlog_while_the_file_cannot_be_written(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    write = FlakyWrite(failures=1_000)
    sink = JsonlSink(str(tmp_path / "e.jsonl"), clock=clock, write=write)
    delivery = Delivery(0, Handler(sink), ShardCounters(), maxsize=4, batch_size=2)
    task = asyncio.create_task(delivery.run())
    for seq in (1, 2):
        delivery.push(event(seq))
    await first_failure(write)
    for seq in (3, 4, 5, 6):
        delivery.push(event(seq))
    assert delivery.full and delivery.backlog == 6
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sink.close()


async def test_cancel_during_retry_leaves_the_checkpoint_before_the_unwritten_batch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    clock = FakeClock()
    write = FlakyWrite()
    sink = JsonlSink(str(path), clock=clock, write=write)
    counters = ShardCounters()
    delivery = Delivery(0, Handler(sink), counters, maxsize=10, batch_size=2)
    task = asyncio.create_task(delivery.run())
    for seq in (1, 2):
        delivery.push(event(seq))
    async with asyncio.timeout(5):
        await delivery.wait_idle()
    assert delivery.checkpoint == (0, 2)
    write.failures = 1_000
    for seq in (3, 4):
        delivery.push(event(seq))
    await first_failure(write)
    await clock.advance(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sink.close()
    assert delivery.checkpoint == (0, 2)
    assert counters.handler_errors == 0
    assert path.read_bytes() == lines_of(event(1), event(2))


async def test_a_cancelled_write_releases_the_file_for_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    clock = FakeClock()
    write = FlakyWrite(failures=1_000)
    failing = JsonlSink(str(path), clock=clock, write=write)
    first = asyncio.ensure_future(failing.handle_batch([event(1)]))
    await first_failure(write)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    other = JsonlSink(str(path), clock=clock)
    async with asyncio.timeout(5):
        await other.handle_batch([event(2)])
    await failing.close()
    await other.close()
    assert path.read_bytes() == lines_of(event(2))
