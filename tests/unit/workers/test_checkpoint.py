"""The checkpoint is the last event the handler *finished*, never the last one received:
with the handler held behind the reader, what the supervisor is told (stats, stop report)
and what a successor resumes from all stop at the last handled seq (issue 21.2)."""

from __future__ import annotations

import asyncio

from tests.reliability.hostile_gateway import Conn, HostileGateway, shard_against
from tests.unit.workers.gateway_harness import WAIT_S, eventually
from workers.events import Event
from workers.reporter import snapshot

HANDLED = 5
RECEIVED = 10


async def test_the_checkpoint_reported_and_resumed_from_is_the_last_handled_seq() -> None:
    release = asyncio.Event()
    stuck = asyncio.Event()
    sent_all = asyncio.Event()

    async def handler(event: Event) -> None:
        if event.seq == HANDLED + 1:
            stuck.set()
            await release.wait()

    async def script(conn: Conn) -> None:
        await conn.handshake()
        if conn.index == 0:
            for seq in range(2, HANDLED + 2):
                await conn.dispatch(seq)
            # the rest only once the handler is held: received after the last handled one
            await stuck.wait()
            for seq in range(HANDLED + 2, RECEIVED + 1):
                await conn.dispatch(seq)
            sent_all.set()

    async with HostileGateway(script) as gw:
        async with shard_against(gw, handler=handler, drain_timeout_s=0.1) as (shard, reporter):
            async with asyncio.timeout(WAIT_S):
                await stuck.wait()
                await sent_all.wait()
            await eventually(lambda: shard.seq == RECEIVED)
            # the reader is ahead: everything received, the handler held on HANDLED + 1
            assert shard.seq == RECEIVED
            (stats,) = snapshot([shard])
            assert stats.session is not None and stats.session.seq == HANDLED
            handed = await shard.suspend()
            assert handed is not None and handed.seq == HANDLED
            assert reporter.stops[-1].session == handed
            release.set()

        # a successor resumes from the checkpoint: the gateway replays what was in flight
        async with shard_against(gw, session=handed):
            await gw.wait_for(lambda: len(gw.handshakes) == 2)
            resume = gw.handshakes[1]
            assert (resume["op"], resume["d"]["seq"]) == (6, HANDLED)
