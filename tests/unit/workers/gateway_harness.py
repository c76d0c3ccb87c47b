"""Helpers for the worker's tests against the in-process fake gateway: a recording handler
that knows which session each event belongs to, and a runtime context manager that always
stops what it started."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

from shardmgr.fakegateway import FakeConfig, FakeGateway, make_token
from tests.doubles import RecordingReporter
from workers import ipc
from workers.events import Event
from workers.permits import IdentifyPermit, InProcessPermits
from workers.runtime import WorkerRuntime

TOKEN = make_token()
INTERVAL_S = 0.2
WAIT_S = 10.0


class RecordingPermits:
    """Grants at once and logs what the shard says of each grant, in order."""

    def __init__(self, log: list[str] | None = None) -> None:
        self.log: list[str] = [] if log is None else log

    async def acquire(self, shard_id: int) -> None:
        self.log.append("granted")

    def sent(self, shard_id: int) -> None:
        self.log.append("sent")

    def release(self, shard_id: int) -> None:
        self.log.append("released")


class Recorder:
    """Records every delivered event as (session_id, seq, name) per shard. A READY event
    starts a new session for its shard; RESUMED and replays continue the current one."""

    def __init__(self) -> None:
        self.events: dict[int, list[tuple[str, int | None, str]]] = {}
        self.session: dict[int, str] = {}
        self.guilds: dict[int, list[str]] = {}
        self.changed = asyncio.Event()
        self.block: asyncio.Event | None = None
        self.raise_on: set[str] = set()

    async def on_event(self, event: Event) -> None:
        if event.name == "READY":
            ready = event.data()
            self.session[event.shard_id] = ready["session_id"]
            self.guilds[event.shard_id] = [g["id"] for g in ready["guilds"]]
        sid = self.session.get(event.shard_id, "?")
        self.events.setdefault(event.shard_id, []).append((sid, event.seq, event.name))
        self.changed.set()
        if self.block is not None:
            await self.block.wait()
        if event.name in self.raise_on:
            raise RuntimeError(f"handler fails on {event.name}")

    def names(self, shard: int) -> list[str]:
        return [name for _, _, name in self.events.get(shard, [])]

    def seqs(self, shard: int, session_id: str) -> list[int | None]:
        return [seq for sid, seq, _ in self.events.get(shard, []) if sid == session_id]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def eventually(predicate: Callable[[], bool]) -> None:
    """Until ``predicate()`` holds, for conditions no event signals (the fake's counters,
    a shard's limiter); checked every few milliseconds, bounded by WAIT_S."""
    async with asyncio.timeout(WAIT_S):
        for _ in itertools.count():
            if predicate():
                return
            await asyncio.sleep(0.01)


def fake_config(**overrides: Any) -> FakeConfig:
    settings: dict[str, Any] = {
        "shards": 1,
        "heartbeat_interval_s": INTERVAL_S,
        "identify_window_s": 0.05,
        "invalid_session_delay_s": 0.05,
        "reconnect_close_after_s": 0.5,
        "token": TOKEN,
    }
    settings.update(overrides)
    return FakeConfig(**settings)


def worker_config(fg: FakeGateway, shards: int = 1, **overrides: Any) -> ipc.WorkerConfig:
    settings: dict[str, Any] = {
        "worker_id": 0,
        "token": TOKEN,
        "gateway_url": fg.gateway_url,
        "num_shards": shards,
        "shards": [ipc.ShardAssignment(i) for i in range(shards)],
        "intents": 513,
        "backoff_base_s": 0.05,
        "backoff_cap_s": 0.5,
        "backoff_stable_s": 5.0,
        "hello_timeout_s": 5.0,
        "ready_timeout_s": 5.0,
        "report_interval_s": 0.2,
        "close_timeout_s": 1.0,
    }
    settings.update(overrides)
    return ipc.WorkerConfig(**settings)


@contextlib.asynccontextmanager
async def running(
    config: ipc.WorkerConfig,
    handler: object,
    permits: IdentifyPermit | None = None,
    reporter: RecordingReporter | None = None,
) -> AsyncIterator[tuple[WorkerRuntime, RecordingReporter]]:
    reporter = reporter or RecordingReporter()
    runtime = WorkerRuntime(config, permits or InProcessPermits(window_s=0.1), reporter, handler)
    await runtime.start()
    try:
        yield runtime, reporter
    finally:
        await runtime.stop()


async def connected(reporter: RecordingReporter, shards: int) -> None:
    """Until every shard reported a session start."""
    async with asyncio.timeout(WAIT_S):
        await reporter.wait_for(lambda: {s for s, *_ in reporter.sessions} >= set(range(shards)))
