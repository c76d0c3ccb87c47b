"""Dispatch names come from the network: a hostile server sending 100k distinct ``t``
values must not grow a shard's counters or the stats message sent to the supervisor."""

from __future__ import annotations

from tests.unit.workers.test_shard_feed import READY, dispatch, make_shard
from workers import ipc
from workers.events import DISPATCH_NAMES, OTHER_EVENT
from workers.reporter import snapshot

HELLO = b'{"op":10,"d":{"heartbeat_interval":41250}}'


async def test_stats_count_undocumented_names_as_other_and_stay_small() -> None:
    shard, _ = make_shard()
    shard.feed(HELLO)
    shard.feed(dispatch(1, "READY", READY))
    for seq in range(2, 100_002):
        shard.feed(dispatch(seq, f"EVENT_{seq}", {}))
    shard.feed(dispatch(100_002, "MESSAGE_CREATE", {}))
    assert set(shard.counters.events) <= DISPATCH_NAMES | {OTHER_EVENT}
    [stats] = snapshot([shard])
    assert stats.events == {"READY": 1, OTHER_EVENT: 100_000, "MESSAGE_CREATE": 1}
    message = ipc.frame(ipc.Stats(gen=0, shards=[stats], rss_bytes=0, cpu_seconds=0.0))
    assert len(message) < 1024
