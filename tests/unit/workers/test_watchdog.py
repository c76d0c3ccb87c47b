"""The worker's watchdog: a blocked event loop is logged once per stall, with the loop's
stack and the event its handler is inside, and the loop lag is measured."""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
import pytest

from workers.events import Event
from workers.inflight import InFlightFile, read_stack
from workers.watchdog import Watchdog

STALL_S = 0.1


def blocking_handler_code(seconds: float) -> None:
    # The blocking call under test (what a handler's time.sleep or sync HTTP does).
    time.sleep(seconds)


def stall_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("event loop blocked")]


async def test_a_blocked_loop_is_logged_once_per_stall_with_the_stack_and_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inflight = InFlightFile(None, 2)
    inflight.slot(1).enter(Event(7, 42, "MESSAGE_CREATE", msgspec.Raw(b"{}")))
    dog = Watchdog(STALL_S, inflight, [6, 7])
    caplog.set_level(logging.ERROR, logger="workers.watchdog")
    dog.start()
    try:
        await asyncio.sleep(0)
        blocking_handler_code(STALL_S * 6)
        await asyncio.sleep(STALL_S)  # the loop turns: this stall is over
        assert len(stall_records(caplog)) == 1
        blocking_handler_code(STALL_S * 6)
        await asyncio.sleep(0)
    finally:
        await dog.stop()
    records = stall_records(caplog)
    assert len(records) == 2
    assert dog.stalls == 2
    first = records[0].__dict__
    assert "blocking_handler_code" in first["stack"] and "time.sleep" in first["stack"]
    assert first["inside"] == [{"shard": 7, "seq": 42, "last_seq": 42, "t": "MESSAGE_CREATE"}]
    assert first["stalled_s"] >= STALL_S


async def test_the_stall_stack_is_left_for_the_supervisor(tmp_path: object) -> None:
    inflight = InFlightFile(None, 1)
    dog = Watchdog(STALL_S, inflight, [0])
    dog.start()
    try:
        await asyncio.sleep(0)
        blocking_handler_code(STALL_S * 6)
    finally:
        await dog.stop()
    stack = read_stack(bytes(inflight._buf), 1)
    assert stack is not None and "blocking_handler_code" in stack


async def test_a_loop_that_keeps_turning_is_never_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dog = Watchdog(STALL_S)
    caplog.set_level(logging.ERROR, logger="workers.watchdog")
    dog.start()
    try:
        for _ in range(20):
            await asyncio.sleep(STALL_S / 10)
    finally:
        await dog.stop()
    assert stall_records(caplog) == []
    assert dog.take_lag() < STALL_S


async def test_the_loop_lag_is_how_late_the_loop_woke_since_the_last_report() -> None:
    dog = Watchdog(STALL_S)
    dog.start()
    try:
        await asyncio.sleep(0)
        blocking_handler_code(STALL_S * 4)
        await asyncio.sleep(STALL_S)
        lag = dog.take_lag()
        assert lag >= STALL_S * 4 - dog._tick
        assert dog.take_lag() == 0.0
    finally:
        await dog.stop()
