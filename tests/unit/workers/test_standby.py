"""A standby worker (the canary of a rolling restart): loads the handler and runs its
``start()``, reports ``Ready`` or ``LoadFailed``, and connects nothing before ``Activate``."""

from __future__ import annotations

import asyncio

import msgspec

from shardmgr.fakegateway import FakeGateway
from tests.unit.workers.gateway_harness import fake_config
from tests.unit.workers.test_ipc_process import Worker, spawn_worker, worker_config
from workers import ipc


async def messages_until_pong(w: Worker) -> list[ipc.ToSupervisor]:
    """Everything the worker reported before answering the ping just sent."""
    seen: list[ipc.ToSupervisor] = []
    async with asyncio.timeout(10):
        while not isinstance(msg := await ipc.read_to_supervisor(w.reader), ipc.Pong):
            assert msg is not None, "worker closed the pipe"
            seen.append(msg)
    return seen


async def test_standby_worker_connects_no_shard_until_activated() -> None:
    async with FakeGateway(fake_config()) as fg, spawn_worker() as w:
        cfg = worker_config(fg, shards=1)
        w.send(ipc.Start(gen=7, config=cfg, standby=True))
        ready = await w.expect(ipc.Ready)
        assert isinstance(ready, ipc.Ready) and (ready.gen, ready.pid) == (7, w.proc.pid)
        # Still standing by: it answers pings, and reports no shard starting before them.
        w.send(ipc.Ping(gen=7, nonce=1))
        assert await messages_until_pong(w) == []
        assert fg.stats()["connections_total"] == 0
        w.send(ipc.Activate(gen=7, shards=cfg.shards))
        request = await w.expect(ipc.IdentifyRequest)
        assert isinstance(request, ipc.IdentifyRequest) and request.shard_id == 0
        w.send(ipc.Shutdown(gen=7))
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 0


async def test_standby_worker_that_cannot_load_the_handler_says_why_and_exits_2() -> None:
    async with FakeGateway(fake_config()) as fg, spawn_worker() as w:
        cfg = msgspec.structs.replace(worker_config(fg, shards=1), handler="no_such_bot_x9:h")
        w.send(ipc.Start(gen=2, config=cfg, standby=True))
        failed = await w.expect(ipc.LoadFailed)
        assert failed == ipc.LoadFailed(
            gen=2,
            handler="no_such_bot_x9:h",
            reason="handler module 'no_such_bot_x9' does not import: "
            "ModuleNotFoundError: No module named 'no_such_bot_x9'",
        )
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 2
        assert fg.stats()["connections_total"] == 0


async def test_standby_worker_told_to_stop_exits_0_without_connecting() -> None:
    async with FakeGateway(fake_config()) as fg, spawn_worker() as w:
        w.send(ipc.Start(gen=3, config=worker_config(fg, shards=1), standby=True))
        await w.expect(ipc.Ready)
        w.send(ipc.Shutdown(gen=3))
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 0
        assert fg.stats()["connections_total"] == 0
