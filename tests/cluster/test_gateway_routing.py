"""``Gateway`` commands for a shard of another worker go out as ``shardmgr.command`` calls
with the same payload a local shard would queue; a failed route is ``ShardUnavailable``."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from workers import ipc
from workers.cluster import COMMAND, CallError, Cluster, CommandArgs, ShardUnavailable
from workers.gateway import Gateway

NUM_SHARDS = 4
GUILD_ON_SHARD_2 = 2 << 22


class Channel:
    gen = 1

    def __init__(self) -> None:
        self.sent: list[ipc.ClusterCall] = []
        self.got = asyncio.Event()

    def send(self, msg: ipc.ToSupervisor) -> None:
        assert isinstance(msg, ipc.ClusterCall)
        self.sent.append(msg)
        self.got.set()


def make() -> tuple[Gateway, Cluster, Channel]:
    channel = Channel()
    config = ipc.WorkerConfig(
        worker_id=0, token="t", gateway_url="ws://x", num_shards=NUM_SHARDS, shards=[],
        intents=0, command_timeout_s=5.0,
    )  # fmt: skip
    cluster = Cluster(channel, config)
    return Gateway({}, NUM_SHARDS, [0], cluster=cluster), cluster, channel


async def answer(cluster: Cluster, channel: Channel, outcome: ipc.CallOutcome) -> ipc.ClusterCall:
    await channel.got.wait()
    [call] = channel.sent
    cluster.on_reply(ipc.CallReply(gen=1, nonce=call.nonce, outcomes=[outcome]))
    return call


async def test_a_voice_state_for_another_workers_guild_is_routed_to_its_shard() -> None:
    gateway, cluster, channel = make()
    ok = ipc.CallOutcome(host="h", worker=1, ok=True, result=msgspec.msgpack.encode(None))
    sending = asyncio.ensure_future(gateway.update_voice_state(GUILD_ON_SHARD_2, None))
    call = await answer(cluster, channel, ok)
    await sending
    assert call.name == COMMAND and call.target == ipc.CallTarget(shard=2)
    cmd = msgspec.msgpack.decode(call.args, type=CommandArgs)
    assert (cmd.shard_id, cmd.op) == (2, 4)
    assert msgspec.json.decode(cmd.d) == {
        "guild_id": str(GUILD_ON_SHARD_2), "channel_id": None,
        "self_mute": False, "self_deaf": False,
    }  # fmt: skip


async def test_a_shard_whose_worker_did_not_come_back_in_time_is_shard_unavailable() -> None:
    gateway, cluster, channel = make()
    late = ipc.CallOutcome(
        host="h", worker=1, ok=False, error="not running", reason=CallError.TIMEOUT
    )
    sending = asyncio.ensure_future(gateway.send_packet(3, 31, {"guild_ids": []}))
    await answer(cluster, channel, late)
    with pytest.raises(ShardUnavailable, match="shard 3"):
        await sending


async def test_a_shard_outside_the_bot_is_a_lookup_error_not_a_call() -> None:
    gateway, _, channel = make()
    with pytest.raises(LookupError):
        await gateway.send_packet(NUM_SHARDS, 3, {})
    assert channel.sent == []


async def test_without_a_supervisor_another_workers_shard_stays_a_lookup_error() -> None:
    gateway = Gateway({}, NUM_SHARDS, [0])
    with pytest.raises(LookupError, match="does not run in this worker"):
        await gateway.update_voice_state(GUILD_ON_SHARD_2, None)
