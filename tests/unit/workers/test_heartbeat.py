"""Heartbeat schedule, latency and the zombie rule, on a fake clock."""

from __future__ import annotations

import asyncio
import random

from workers.clock import FakeClock
from workers.heartbeat import Heartbeater, HeartbeatMonitor


class Harness:
    def __init__(self, interval: float = 10.0, check_acks: bool = True, jitter: float = 0.5):
        self.clock = FakeClock()
        self.monitor = HeartbeatMonitor(self.clock, check_acks)
        self.sent: list[float] = []
        self.zombie = asyncio.Event()
        rng = random.Random()
        rng.random = lambda: jitter  # type: ignore[method-assign]
        self.beater = Heartbeater(
            interval, self.monitor, self._send, self.zombie.set, self.clock, rng
        )
        self.task = asyncio.ensure_future(self.beater.run())

    async def _send(self) -> None:
        self.monitor.on_sent()
        self.sent.append(self.clock.monotonic())

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_first_beat_after_jittered_interval_then_every_interval() -> None:
    h = Harness(interval=10, jitter=0.25)
    await asyncio.sleep(0)  # let the task schedule its first beat at the current time
    start = h.clock.monotonic()
    for _ in range(3):
        await h.clock.advance(10)
        h.monitor.on_ack()
    assert [t - start for t in h.sent] == [2.5, 12.5, 22.5]
    await h.close()


async def test_latency_is_time_from_beat_to_ack() -> None:
    h = Harness(interval=10, jitter=0)
    await h.clock.advance(0)
    await h.clock.advance(0.125)
    assert h.monitor.on_ack() == 0.125
    await h.close()


async def test_unacked_beat_with_silence_is_a_zombie_at_the_next_beat() -> None:
    h = Harness(interval=10, jitter=0)
    await h.clock.advance(0)
    assert len(h.sent) == 1
    await h.clock.advance(10)
    assert h.zombie.is_set()
    assert len(h.sent) == 1
    await h.close()


async def test_any_inbound_frame_counts_as_proof_of_life() -> None:
    h = Harness(interval=10, jitter=0)
    await h.clock.advance(0)
    await h.clock.advance(5)
    h.monitor.received_since_beat = True  # a dispatch arrived, the ACK is stuck behind a backlog
    await h.clock.advance(5)
    assert not h.zombie.is_set()
    assert len(h.sent) == 2
    await h.close()


async def test_ack_check_switched_off_never_declares_a_zombie() -> None:
    h = Harness(interval=10, jitter=0, check_acks=False)
    await h.clock.advance(0)
    await h.clock.advance(30)
    assert not h.zombie.is_set()
    assert len(h.sent) == 4
    await h.close()


async def test_paused_reading_is_not_a_zombie() -> None:
    h = Harness(interval=10, jitter=0)
    await h.clock.advance(0)
    h.monitor.paused = True
    await h.clock.advance(10)
    assert not h.zombie.is_set()
    await h.close()


async def test_server_requested_beat_just_before_a_tick_is_not_a_zombie() -> None:
    # discord.js#3993: op 1 arrives 0.24 s before the scheduled beat; our reply is not
    # ACKed yet when the tick comes, but the op 1 itself proved the server alive.
    h = Harness(interval=10, jitter=0)
    await h.clock.advance(0)
    h.monitor.on_ack()
    await h.clock.advance(9.76)
    h.monitor.received_since_beat = True  # the op 1 frame
    h.monitor.on_requested_sent()
    await h.clock.advance(0.24)
    assert not h.zombie.is_set()
    assert len(h.sent) == 2
    await h.close()


async def test_requested_beat_latency_is_kept_for_the_beat_already_awaiting_ack() -> None:
    h = Harness(interval=10, jitter=0)
    await h.clock.advance(0)
    await h.clock.advance(1)
    h.monitor.on_requested_sent()
    await h.clock.advance(1)
    assert h.monitor.on_ack() == 2
    await h.close()
