"""``POST /_fake/dispatch``: a user says something, a slash command is used, or any event
is sent as given, to the sessions that own the guild."""

from __future__ import annotations

import pytest

from tests.unit.fakegateway.client import GatewayClient, ready_client
from tests.unit.fakegateway.conftest import Factory
from tests.unit.fakegateway.rest_helpers import CONTENT_INTENTS, call, guild_of_shard


async def test_message_without_ids_comes_from_a_member_in_a_text_channel(
    make_gateway: Factory, http
):
    fg = await make_gateway(shards=2, max_concurrency=2)
    clients = [await ready_client(http, fg, [i, 2], intents=CONTENT_INTENTS) for i in range(2)]
    said = await call(
        http, fg, "POST", "/_fake/dispatch", json={"t": "MESSAGE_CREATE", "content": "!ping"}
    )
    assert said.status == 200
    assert set(said.body) == {"guild_id", "channel_id", "message_id", "shard_id", "sessions"}
    assert all(isinstance(said.body[k], str) for k in ("guild_id", "channel_id", "message_id"))
    guild = fg.state.world.by_id[int(said.body["guild_id"])]
    assert int(said.body["channel_id"]) in guild.text_channels
    assert said.body["shard_id"] == (guild.id >> 22) % 2 and said.body["sessions"] == 1
    event = await clients[said.body["shard_id"]].recv_until(lambda m: m["t"] == "MESSAGE_CREATE")
    assert event["d"]["id"] == said.body["message_id"] and event["d"]["content"] == "!ping"
    assert event["d"]["author"]["id"] != str(fg.state.bot.id)
    assert "bot" not in event["d"]["author"]


@pytest.mark.parametrize("as_text", [True, False])
async def test_ids_are_taken_as_strings_or_numbers(make_gateway: Factory, http, as_text):
    fg = await make_gateway()
    guild = guild_of_shard(fg, 0, 1)
    channel = guild.text_channels[-1]
    body = {
        "t": "MESSAGE_CREATE",
        "content": "hi",
        "guild_id": str(guild.id) if as_text else guild.id,
        "channel_id": str(channel) if as_text else channel,
    }
    said = await call(http, fg, "POST", "/_fake/dispatch", json=body)
    assert (said.body["guild_id"], said.body["channel_id"]) == (str(guild.id), str(channel))


@pytest.mark.parametrize(
    "body",
    [
        {"content": "no t"},
        {"t": "MESSAGE_CREATE", "guild_id": "1"},
        {"t": "MESSAGE_CREATE", "channel_id": "not-a-number"},
        {"t": "INTERACTION_CREATE"},
        {"t": "GUILD_UPDATE", "d": {"name": "no guild id"}},
    ],
)
async def test_requests_the_world_cannot_serve_are_400(make_gateway: Factory, http, body):
    fg = await make_gateway()
    answer = await call(http, fg, "POST", "/_fake/dispatch", json=body)
    assert answer.status == 400 and answer.body["error"]


async def test_any_other_event_is_sent_as_given(make_gateway: Factory, http):
    fg = await make_gateway()
    client = await ready_client(http, fg)
    guild = guild_of_shard(fg, 0, 1)
    d = {"guild_id": str(guild.id), "id": str(guild.id), "name": "Renamed"}
    said = await call(http, fg, "POST", "/_fake/dispatch", json={"t": "GUILD_UPDATE", "d": d})
    assert said.body["shard_id"] == 0
    event = await client.recv_until(lambda m: m["t"] == "GUILD_UPDATE")
    assert event["d"] == d


async def test_a_disconnected_session_gets_the_event_on_resume(make_gateway: Factory, http):
    fg = await make_gateway()
    client = await ready_client(http, fg)
    session_id, seq = client.session_id, fg.sessions()[0]["last_seq"]
    await client.close(4000)
    await fg.wait_for(lambda g: g.stats()["connections_open"] == 0, 5)
    said = fg.dispatch("MESSAGE_CREATE", content="while away")
    again = await ready_for_resume(http, fg, session_id, seq)
    event = await again.recv_until(lambda m: m["t"] == "MESSAGE_CREATE")
    assert event["d"]["id"] == said["message_id"]


async def ready_for_resume(http, fg, session_id, seq):
    client = await GatewayClient.connect(http, fg.resume_gateway_url)
    await client.recv()
    await client.resume(session_id, seq)
    return client
