"""Heartbeating for one connection: the schedule, ACK latency and the zombie rule.

``HeartbeatMonitor`` is the bookkeeping (pure, clock-injected); ``Heartbeater`` is the task
that sends beats on schedule. Any inbound frame counts as proof of life, so a connection
whose ACK sits behind a backlog of dispatches is never declared a zombie. Beats the server
asks for (op 1) are sent by the shard's connection (``HeartbeatMonitor.on_requested_sent``),
so they die with it.
"""

from __future__ import annotations

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
        "paused",
        "received_since_beat",
    )

    def __init__(self, clock: Clock = REAL_CLOCK, check_acks: bool = True) -> None:
        self._clock = clock
        self.check_acks = check_acks
        self.awaiting_ack = False
        self.received_since_beat = True
        self._sent_at = 0.0
        # Set while the shard deliberately stops reading (handler backlog full): silence
        # then proves nothing about the server.
        self.paused = False

    def on_sent(self) -> None:
        self._sent_at = self._clock.monotonic()
        self.awaiting_ack = True
        self.received_since_beat = False

    def on_requested_sent(self) -> None:
        """A beat the server asked for (op 1). The op 1 itself proved the peer alive, so
        ``received_since_beat`` is left alone: clearing it made the next scheduled tick see
        "unACKed and silent" and kill a healthy connection (discord.js#3993). The send time
        is taken for latency only if no beat is already waiting for its ACK."""
        if not self.awaiting_ack:
            self._sent_at = self._clock.monotonic()
            self.awaiting_ack = True

    def on_ack(self) -> float | None:
        """An op 11; returns the latency of the beat it answers (None if unsolicited)."""
        if not self.awaiting_ack:
            return None
        self.awaiting_ack = False
        return self._clock.monotonic() - self._sent_at

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

    async def run(self) -> None:
        clock = self._clock
        # Jitter the first beat so a reconnect storm does not beat in lockstep.
        due = clock.monotonic() + self.interval_s * self._rng.random()
        while True:
            await clock.sleep(due - clock.monotonic())
            if self.monitor.is_zombie():
                self._on_zombie()
                return
            await self._send()
            # Scheduled from the previous due time, so send latency does not drift it.
            due = max(due + self.interval_s, clock.monotonic())
