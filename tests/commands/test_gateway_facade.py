"""The handler-facing ``workers.gateway.Gateway`` against the in-process fake gateway: what
a bot's commands become on the wire, and how the handler gets the facade."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from shardmgr.fakegateway import FakeGateway
from tests.unit.workers.gateway_harness import (
    WAIT_S,
    connected,
    eventually,
    fake_config,
    running,
    worker_config,
)
from workers import gateway as gateway_api
from workers.events import Event
from workers.gateway import Gateway
from workers.protocol import Op


class Bot:
    """A handler object whose ``start`` takes the gateway, recording the events it gets."""

    def __init__(self) -> None:
        self.gateway: Gateway | None = None
        self.events: list[Event] = []
        self.changed = asyncio.Event()

    async def start(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def _record(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    on_voice_state_update = _record
    on_guild_members_chunk = _record
    on_channel_info = _record

    async def wait_event(self, name: str) -> Event:
        async with asyncio.timeout(WAIT_S):
            while True:
                for event in self.events:
                    if event.name == name:
                        return event
                self.changed.clear()
                await self.changed.wait()


class NoArgStart:
    def __init__(self) -> None:
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def on_ready(self, event: Event) -> None:
        return None


def guild_ids(fg: FakeGateway, shard_id: int, num_shards: int) -> list[int]:
    return [g.id for g in fg.state.world.guilds_for(shard_id, num_shards)]


async def test_start_receives_the_gateway_when_it_takes_one_parameter() -> None:
    bot = Bot()
    async with FakeGateway(fake_config()) as fg, running(worker_config(fg), bot) as (runtime, _):
        assert bot.gateway is runtime.gateway
        assert bot.gateway.shard_ids == [0]
        assert bot.gateway.num_shards == 1


async def test_start_without_parameters_still_works() -> None:
    bot = NoArgStart()
    async with FakeGateway(fake_config()) as fg, running(worker_config(fg), bot):
        assert bot.started


async def test_current_returns_the_runtime_gateway_inside_a_worker() -> None:
    async with FakeGateway(fake_config()) as fg, running(worker_config(fg), Bot()) as (rt, _):
        assert gateway_api.current() is rt.gateway


def test_current_raises_outside_a_worker() -> None:
    # A fresh interpreter: nothing in it ever started a worker runtime.
    code = (
        "from workers.gateway import current\n"
        "try:\n    current()\nexcept RuntimeError as e:\n    print('RuntimeError', e)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.startswith("RuntimeError no gateway here")


def test_shard_for_guild_follows_discords_formula() -> None:
    gateway = Gateway({}, num_shards=16)
    guild = 81384788765712384
    assert gateway.shard_for_guild(guild) == (guild >> 22) % 16
    assert gateway.shard_for_guild(str(guild)) == gateway.shard_for_guild(guild)


async def test_update_presence_reaches_every_shard_of_the_worker() -> None:
    bot = Bot()
    async with (
        FakeGateway(fake_config(shards=2)) as fg,
        running(worker_config(fg, shards=2), bot) as (_, reporter),
    ):
        await connected(reporter, 2)
        assert bot.gateway is not None
        await bot.gateway.update_presence(status="dnd", activities=[{"name": "tests", "type": 0}])
        await eventually(lambda: fg.stats()["presence_by_shard"] == {"0": "dnd", "1": "dnd"})
        assert fg.stats()["requests_by_op"][str(int(Op.PRESENCE_UPDATE))] == 2


async def test_update_presence_with_shard_id_reaches_only_that_shard() -> None:
    bot = Bot()
    async with (
        FakeGateway(fake_config(shards=2)) as fg,
        running(worker_config(fg, shards=2), bot) as (_, reporter),
    ):
        await connected(reporter, 2)
        assert bot.gateway is not None
        await bot.gateway.update_presence(status="idle", shard_id=1)
        await eventually(lambda: fg.stats()["presence_by_shard"] == {"1": "idle"})


async def test_update_presence_rejects_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="status must be one of"):
        await Gateway({}, 1).update_presence(status="busy")


async def test_voice_state_update_goes_to_the_guilds_shard() -> None:
    bot = Bot()
    async with (
        FakeGateway(fake_config(shards=2)) as fg,
        running(worker_config(fg, shards=2), bot) as (_, reporter),
    ):
        await connected(reporter, 2)
        assert bot.gateway is not None
        guild = guild_ids(fg, 1, 2)[0]
        await bot.gateway.update_voice_state(guild, None, self_mute=True)
        event = await bot.wait_event("VOICE_STATE_UPDATE")
        # The fake answers only on the shard the guild routes to.
        assert event.shard_id == 1
        assert event.data()["guild_id"] == str(guild)
        assert event.data()["self_mute"] is True


async def test_request_members_goes_to_the_guilds_shard() -> None:
    bot = Bot()
    async with (
        FakeGateway(fake_config(shards=2)) as fg,
        running(worker_config(fg, shards=2), bot) as (_, reporter),
    ):
        await connected(reporter, 2)
        assert bot.gateway is not None
        guild = guild_ids(fg, 0, 2)[0]
        await bot.gateway.request_members(guild, query="", limit=0, nonce="n1")
        event = await bot.wait_event("GUILD_MEMBERS_CHUNK")
        assert event.shard_id == 0
        assert event.data()["guild_id"] == str(guild)
        assert event.data()["nonce"] == "n1"


async def test_a_guild_of_another_worker_raises_lookup_error() -> None:
    bot = Bot()
    async with FakeGateway(fake_config(shards=2)) as fg:
        # This worker runs shard 0 of 2; shard 1's guilds belong to another worker.
        config = worker_config(fg, shards=1, num_shards=2)
        async with running(config, bot) as (_, reporter):
            await connected(reporter, 1)
            assert bot.gateway is not None
            foreign = guild_ids(fg, 1, 2)[0]
            with pytest.raises(LookupError, match="does not run in this worker"):
                await bot.gateway.update_voice_state(foreign, None)
            with pytest.raises(LookupError, match="does not run in this worker"):
                await bot.gateway.request_members(foreign, user_ids=[1])
            with pytest.raises(LookupError):
                bot.gateway.latency(1)


async def test_send_packet_sends_an_unwrapped_opcode() -> None:
    bot = Bot()
    async with FakeGateway(fake_config()) as fg, running(worker_config(fg), bot) as (_, rep):
        await connected(rep, 1)
        assert bot.gateway is not None
        guild = guild_ids(fg, 0, 1)[0]
        await bot.gateway.send_packet(
            0, Op.REQUEST_CHANNEL_INFO, {"guild_id": str(guild), "fields": ["status"]}
        )
        event = await bot.wait_event("CHANNEL_INFO")
        assert event.data()["guild_id"] == str(guild)


async def test_send_raw_sends_the_bytes_as_given() -> None:
    bot = Bot()
    async with FakeGateway(fake_config()) as fg, running(worker_config(fg), bot) as (_, rep):
        await connected(rep, 1)
        assert bot.gateway is not None
        await bot.gateway.send_raw(
            0, b'{"op":3,"d":{"since":null,"activities":[],"status":"invisible","afk":false}}'
        )
        await eventually(lambda: fg.stats()["presence_by_shard"] == {"0": "invisible"})


async def test_latency_and_state_report_the_shard() -> None:
    bot = Bot()
    async with FakeGateway(fake_config()) as fg, running(worker_config(fg), bot) as (rt, rep):
        await connected(rep, 1)
        assert bot.gateway is not None
        assert bot.gateway.state(0) == "connected"
        await eventually(lambda: rt.shards[0].latency_s is not None)
        latency: Any = bot.gateway.latency(0)
        assert latency >= 0.0
