"""What a reshard needs of the fake: a recommendation raised (or the per-shard guild limit
lowered) at run time, and guild events reaching every session that owns the guild while
two shard counts run side by side, as Discord sends them."""

from __future__ import annotations

import json

import pytest

from tests.unit.fakegateway.client import GatewayClient, ready_client
from tests.unit.fakegateway.conftest import Factory
from tests.unit.fakegateway.rest_helpers import call, guild_of_shard
from workers.clock import FakeClock


async def test_recommend_changes_gateway_bot_and_echoes_what_it_set(make_gateway: Factory, http):
    fg = await make_gateway(shards=8)
    answer = await call(http, fg, "POST", "/_fake/recommend", json={"shards": 16})
    assert answer.status == 200
    assert answer.body == {"shards": 16, "max_guilds_per_shard": 2500}
    assert (await call(http, fg, "GET", "/gateway/bot")).body["shards"] == 16
    assert fg.set_recommendation(4, max_guilds_per_shard=7) == {
        "shards": 4,
        "max_guilds_per_shard": 7,
    }


@pytest.mark.parametrize("body", [{}, {"shards": 0}, {"shards": 2, "max_guilds_per_shard": 0}])
async def test_bad_recommendations_are_400(make_gateway: Factory, http, body):
    fg = await make_gateway()
    assert (await call(http, fg, "POST", "/_fake/recommend", json=body)).status == 400


async def test_a_lowered_guild_limit_closes_the_next_identify_with_4011(make_gateway, http):
    fg = await make_gateway(guilds=6)
    await ready_client(http, fg)
    fg.set_recommendation(2, max_guilds_per_shard=3)
    client = await GatewayClient.connect(http, fg.gateway_url)
    await client.recv()
    await client.identify([0, 1])
    assert await client.expect_close() == 4011


async def test_dispatch_reaches_every_session_owning_the_guild(make_gateway: Factory, http):
    fg = await make_gateway(shards=2, max_concurrency=2)
    old = await ready_client(http, fg, [0, 1])
    guild = guild_of_shard(fg, 1, 2)
    new = await ready_client(http, fg, [1, 2])
    said = fg.dispatch("MESSAGE_CREATE", content="both", guild_id=guild.id)
    assert said["sessions"] == 2
    for client in (old, new):
        event = await client.recv_until(lambda m: m["t"] == "MESSAGE_CREATE")
        assert event["d"]["id"] == said["message_id"]


async def _events(client: GatewayClient) -> list[str]:
    out = []
    try:
        while True:
            msg = await client.recv(0.3)
            if msg["op"] == 0 and msg["t"] not in ("READY", "GUILD_CREATE", "GUILD_DELETE"):
                out.append(json.dumps([msg["t"], msg["d"]], sort_keys=True))
    except TimeoutError:
        return out


async def test_traffic_reaches_every_owner_while_two_shard_counts_run(make_gateway, http):
    clock = FakeClock()
    fg = await make_gateway(clock=clock, shards=2, max_concurrency=4, heartbeat_interval_s=1e4)
    whole = await ready_client(http, fg, [0, 1])
    # Shard 0 of both counts share identify bucket 0: let its window pass.
    await clock.advance(1.0)
    halves = [await ready_client(http, fg, [i, 2]) for i in range(2)]
    fg.set_event_rate(20)
    await clock.advance(1.0)
    fg.set_event_rate(0)
    seen_whole = set(await _events(whole))
    seen_halves = [set(await _events(c)) for c in halves]
    guild_events_of_halves = {e for seen in seen_halves for e in seen if '"guild_id": "' in e}
    assert guild_events_of_halves and guild_events_of_halves <= seen_whole
    for shard, seen in enumerate(seen_halves):
        mine = {g.id for g in fg.state.world.guilds_for(shard, 2)}
        for event in seen_whole:
            d = json.loads(event)[1]
            if d.get("guild_id") is not None and int(d["guild_id"]) in mine:
                assert event in seen, event
