"""Test doubles shared by several suites."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from workers import ipc


class RecordingReporter:
    """A ``workers.reporter.Reporter`` that keeps everything in memory. ``changed`` is set on
    every report so tests can wait on conditions."""

    def __init__(self) -> None:
        self.states: list[tuple[int, ipc.ShardState]] = []
        self.sessions: list[tuple[int, str, ipc.SessionInfo, int]] = []
        self.reconnects: list[ipc.Reconnecting] = []
        self.stops: list[ipc.ShardStopped] = []
        self.stats_reports: list[list[ipc.ShardStats]] = []
        self.changed = asyncio.Event()

    def _touch(self) -> None:
        self.changed.set()

    def state_changed(self, shard_id: int, state: ipc.ShardState) -> None:
        self.states.append((shard_id, state))
        self._touch()

    def session_started(
        self, shard_id: int, kind: str, session: ipc.SessionInfo, guilds: int
    ) -> None:
        self.sessions.append((shard_id, kind, session, guilds))
        self._touch()

    def reconnecting(
        self,
        shard_id: int,
        reason: ipc.Reason,
        close_code: int | None,
        resume: bool,
        delay_s: float,
    ) -> None:
        self.reconnects.append(
            ipc.Reconnecting(
                gen=0,
                shard_id=shard_id,
                reason=reason,
                close_code=close_code,
                resume=resume,
                delay_s=delay_s,
            )
        )
        self._touch()

    def stopped(
        self,
        shard_id: int,
        reason: str,
        close_code: int | None,
        fatal: bool,
        session: ipc.SessionInfo | None,
    ) -> None:
        self.stops.append(
            ipc.ShardStopped(
                gen=0,
                shard_id=shard_id,
                reason=reason,
                close_code=close_code,
                fatal=fatal,
                session=session,
            )
        )
        self._touch()

    def stats(self, shards: list[ipc.ShardStats], rss_bytes: int, cpu_seconds: float) -> None:
        self.stats_reports.append(shards)
        self._touch()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checking after every report (callers
        bound it with ``asyncio.timeout``)."""
        while not predicate():
            self.changed.clear()
            await self.changed.wait()
