"""``WorkerRuntime``: what happens when one of its tasks dies."""

from __future__ import annotations

import asyncio

from tests.doubles import RecordingReporter
from workers import ipc
from workers.events import Event
from workers.permits import InProcessPermits
from workers.runtime import WorkerRuntime


async def nothing(event: Event) -> None:
    return None


async def test_a_delivery_task_that_ends_reports_its_shard_crashed() -> None:
    config = ipc.WorkerConfig(
        worker_id=0,
        token="token",
        # Nothing listens: the shard keeps reconnecting, which is all this test needs.
        gateway_url="ws://127.0.0.1:1",
        num_shards=1,
        shards=[ipc.ShardAssignment(0, ipc.SessionInfo("s", 7, "ws://127.0.0.1:1"))],
        intents=0,
    )
    reporter = RecordingReporter()
    runtime = WorkerRuntime(config, InProcessPermits(), reporter, nothing)
    await runtime.start()
    try:
        runtime._delivery_tasks[0].cancel()
        async with asyncio.timeout(5):
            await reporter.wait_for(lambda: bool(reporter.stops))
        stop = reporter.stops[0]
        assert (stop.shard_id, stop.reason, stop.fatal) == (0, "crashed", False)
        assert stop.session == ipc.SessionInfo("s", 7, "ws://127.0.0.1:1")
    finally:
        await runtime.stop()
