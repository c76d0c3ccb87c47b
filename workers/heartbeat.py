"""Heartbeating for one connection: the schedule, ACK latency and the zombie rule.

``HeartbeatMonitor`` is the bookkeeping (pure, clock-injected); ``Heartbeater`` is the task
that sends beats on schedule. Any inbound frame counts as proof of life, so a connection
whose ACK sits behind a backlog of dispatches is never declared a zombie.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

from workers.clock import REAL_CLOCK, Clock


class HeartbeatMonitor:
    __slots__ = (
        "_clock",
        "_sent_at",
        "awaiting_ack",
        "check_acks",
        "last_latency_s",
        "paused",
        "received_since_beat",
    )

    def __init__(self, clock: Clock = REAL_CLOCK, check_acks: bool = True) -> None:
        self._clock = clock
        self.check_acks = check_acks
        self.awaiting_ack = False
        self.received_since_beat = True
        self._sent_at = 0.0
        self.last_latency_s: float | None = None
        # Set while the shard deliberately stops reading (handler backlog full): silence
        # then proves nothing about the server.
        self.paused = False

    def on_sent(self) -> None:
        self._sent_at = self._clock.monotonic()
        self.awaiting_ack = True
        self.received_since_beat = False

    def on_receive(self) -> None:
        self.received_since_beat = True

    def on_ack(self) -> float | None:
        """An op 11; returns the latency of the beat it answers (None if unsolicited)."""
        if not self.awaiting_ack:
            return None
        self.awaiting_ack = False
        latency = self._clock.monotonic() - self._sent_at
        self.last_latency_s = latency
        return latency

    def is_zombie(self) -> bool:
        """Checked when a beat is due: the previous one unanswered and nothing at all heard."""
        return (
            self.check_acks
            and self.awaiting_ack
            and not self.received_since_beat
            and not self.paused
        )


class Heartbeater:
    """Runs as its own task per connection; cancelled by the connection that owns it."""

    def __init__(
        self,
        interval_s: float,
        monitor: HeartbeatMonitor,
        send: Callable[[], Coroutine[Any, Any, None]],
        on_zombie: Callable[[], None],
        clock: Clock = REAL_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.monitor = monitor
        self._send = send
        self._on_zombie = on_zombie
        self._clock = clock
        self._rng = rng or random.Random()
        self._extra: set[asyncio.Task[None]] = set()

    def request(self) -> None:
        """The server sent op 1: beat at once, without the zombie check for that beat
        (running the check here killed healthy shards in discord.js#3993)."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(self._send())
        self._extra.add(task)
        task.add_done_callback(self._extra.discard)

    async def run(self) -> None:
        clock = self._clock
        # Jitter the first beat so a reconnect storm does not beat in lockstep.
        due = clock.monotonic() + self.interval_s * self._rng.random()
        try:
            while True:
                await clock.sleep(due - clock.monotonic())
                if self.monitor.is_zombie():
                    self._on_zombie()
                    return
                await self._send()
                # Scheduled from the previous due time, so send latency does not drift it.
                due = max(due + self.interval_s, clock.monotonic())
        finally:
            for task in self._extra:
                task.cancel()
