"""Which session a successor process resumes from (``Shard.checkpoint_session``): the last
event the handler finished, of the current session only. Each test kills mutants of
workers/shard.py that the other tests let through (`make mutate`)."""

from __future__ import annotations

import asyncio

from tests.unit.workers.test_shard_feed import READY, dispatch, make_shard
from workers import ipc
from workers.shard import Shard


async def handle_everything(shard: Shard) -> None:
    task = asyncio.create_task(shard.delivery.run())
    try:
        async with asyncio.timeout(5):
            await shard.delivery.wait_idle()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_checkpoint_follows_the_events_the_handler_finished() -> None:
    shard, _ = make_shard(session=ipc.SessionInfo("old", 40, "ws://127.0.0.1:3"))
    shard.feed(dispatch(41, "MESSAGE_CREATE", {}))
    shard.feed(dispatch(42, "MESSAGE_CREATE", {}))
    await handle_everything(shard)
    assert shard.checkpoint_session() == ipc.SessionInfo("old", 42, "ws://127.0.0.1:3")


async def test_a_checkpoint_of_the_previous_session_never_counts_in_a_new_one() -> None:
    shard, _ = make_shard(session=ipc.SessionInfo("old", 40, "ws://127.0.0.1:3"))
    shard.feed(dispatch(41, "MESSAGE_CREATE", {}))
    await handle_everything(shard)  # checkpoint: seq 41 of the old session
    shard.feed(dispatch(1, "READY", READY))  # a new session; READY not handled yet
    assert shard.checkpoint_session() == ipc.SessionInfo("abc", 0, "ws://127.0.0.1:2")


def test_no_session_without_both_an_id_and_a_resume_url() -> None:
    shard, _ = make_shard()
    shard.session.session_id = "abc"  # READY gives both at once; only a half-built state lacks one
    assert shard.session_info() is None and shard.checkpoint_session() is None
    shard.session.session_id, shard.session.resume_url = None, "ws://127.0.0.1:2"
    assert shard.session_info() is None and shard.checkpoint_session() is None
