"""Live traffic and the client-to-server requests that have answers (op 4, 8, 31, 43)."""

from __future__ import annotations

import collections

from fakegateway import FakeGateway
from tests.unit.fakegateway.client import GatewayClient, ready_client
from tests.unit.fakegateway.conftest import Factory
from workers.protocol import ALL_INTENTS, INTENT_BITS, PRIVILEGED_INTENTS

GUILD_EVENTS_NO_PRESENCE = ALL_INTENTS & ~PRIVILEGED_INTENTS


async def _collect(client: GatewayClient, n: int) -> list[dict]:
    out = []
    while len(out) < n:
        msg = await client.recv()
        if msg["op"] == 0 and msg["t"] not in ("READY", "GUILD_CREATE"):
            out.append(msg)
    return out


async def test_traffic_is_a_mix_with_contiguous_sequence_numbers(make_gateway: Factory, http):
    fg = await make_gateway(shards=1, event_rate=400)
    client = await ready_client(http, fg, intents=ALL_INTENTS)
    client.start_heartbeats(0.1)
    events = await _collect(client, 300)
    seqs = [m["s"] for m in events]
    assert seqs == list(range(seqs[0], seqs[0] + 300))
    kinds = collections.Counter(m["t"] for m in events)
    assert kinds.most_common(1)[0][0] == "PRESENCE_UPDATE"
    assert {"MESSAGE_CREATE", "TYPING_START", "GUILD_MEMBER_UPDATE", "MESSAGE_REACTION_ADD"} <= set(
        kinds
    )
    assert fg.stats()["dispatches_sent"] >= 300


async def test_events_respect_intents(make_gateway: Factory, http):
    fg = await make_gateway(shards=1, event_rate=400)
    only_messages = INTENT_BITS["GUILDS"] | INTENT_BITS["GUILD_MESSAGES"]
    client = await ready_client(http, fg, intents=only_messages)
    client.start_heartbeats(0.1)
    events = await _collect(client, 100)
    assert {m["t"] for m in events} <= {
        "MESSAGE_CREATE",
        "MESSAGE_UPDATE",
        "MESSAGE_DELETE",
        "INTERACTION_CREATE",
        "CHANNEL_UPDATE",
    }
    creates = [m for m in events if m["t"] == "MESSAGE_CREATE"]
    assert creates and all(m["d"]["content"] == "" for m in creates)


async def test_guild_events_route_to_their_shard_and_dms_only_to_shard_0(make_gateway, http):
    fg = await make_gateway(shards=2, max_concurrency=2, event_rate=400)
    intents = GUILD_EVENTS_NO_PRESENCE
    clients = [await ready_client(http, fg, [i, 2], intents=intents) for i in (0, 1)]
    for shard, client in enumerate(clients):
        client.start_heartbeats(0.1)
        events = await _collect(client, 200)
        guild_ids = {int(m["d"]["guild_id"]) for m in events if "guild_id" in m["d"]}
        assert all((g >> 22) % 2 == shard for g in guild_ids)
        dms = [m for m in events if m["t"] == "MESSAGE_CREATE" and "guild_id" not in m["d"]]
        assert (len(dms) > 0) == (shard == 0)


async def test_set_event_rate_starts_traffic(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    client.start_heartbeats(0.1)
    before = fg.sessions()[0]["last_seq"]
    async with http.post(f"{fg.base_url}/_fake/traffic", json={"event_rate": 200}) as r:
        assert r.status == 200
    await fg.wait_for(lambda g: g.sessions()[0]["last_seq"] >= before + 20, 5)


async def test_request_all_members_gets_chunks_then_rate_limited(make_gateway: Factory, http):
    fg = await make_gateway(shards=1, guilds=200)
    client = await ready_client(http, fg, intents=ALL_INTENTS)
    big = max(fg.state.world.guilds, key=lambda g: g.member_count)
    assert big.member_count > 1000
    request = {"guild_id": str(big.id), "query": "", "limit": 0, "nonce": "n1"}
    await client.send(8, request)
    first = await client.recv_until(lambda m: m["t"] == "GUILD_MEMBERS_CHUNK")
    count = first["d"]["chunk_count"]
    assert count == -(-big.member_count // 1000) and first["d"]["nonce"] == "n1"
    members = len(first["d"]["members"])
    for _ in range(count - 1):
        members += len((await client.recv())["d"]["members"])
    assert members == big.member_count
    await client.send(8, request)
    limited = await client.recv_until(lambda m: m["t"] == "RATE_LIMITED")
    assert limited["d"]["opcode"] == 8 and 0 < limited["d"]["retry_after"] <= 30
    assert limited["d"]["meta"] == {"guild_id": str(big.id), "nonce": "n1"}
    assert limited["s"] == client.seq


async def test_request_members_by_user_ids_reports_not_found(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    guild = (await client.recv_until(lambda m: m["t"] == "GUILD_CREATE"))["d"]
    known = guild["members"][0]["user"]["id"]
    await client.send(8, {"guild_id": guild["id"], "user_ids": [known, "42"], "limit": 0})
    chunk = (await client.recv_until(lambda m: m["t"] == "GUILD_MEMBERS_CHUNK"))["d"]
    assert [m["user"]["id"] for m in chunk["members"]] == [known]
    assert chunk["not_found"] == ["42"]


async def test_voice_state_update_is_answered(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    guild = (await client.recv_until(lambda m: m["t"] == "GUILD_CREATE"))["d"]
    voice = next(c["id"] for c in guild["channels"] if c["type"] == 2)
    await client.send(
        4, {"guild_id": guild["id"], "channel_id": voice, "self_mute": False, "self_deaf": True}
    )
    state = await client.recv_until(lambda m: m["t"] == "VOICE_STATE_UPDATE")
    assert state["d"]["channel_id"] == voice and state["d"]["self_deaf"] is True
    server = await client.recv()
    assert server["t"] == "VOICE_SERVER_UPDATE" and server["d"]["guild_id"] == guild["id"]


async def test_presence_update_is_accepted(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    await client.send(
        3,
        {
            "since": None,
            "activities": [{"name": "tests", "type": 0}],
            "status": "idle",
            "afk": False,
        },
    )
    await client.heartbeat()
    assert (await client.recv_until(lambda m: m["op"] != 0))["op"] == 11


async def test_soundboard_and_channel_info_requests_are_answered(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    guild = (await client.recv_until(lambda m: m["t"] == "GUILD_CREATE"))["d"]["id"]
    await client.send(31, {"guild_ids": [guild]})
    sounds = await client.recv_until(lambda m: m["t"] == "SOUNDBOARD_SOUNDS")
    assert sounds["d"] == {"guild_id": guild, "soundboard_sounds": []}
    await client.send(43, {"guild_id": guild, "fields": ["status"]})
    info = await client.recv_until(lambda m: m["t"] == "CHANNEL_INFO")
    assert info["d"]["guild_id"] == guild


async def test_each_session_records_the_ops_it_sent(make_gateway: Factory, http):
    fg = await make_gateway(shards=2, max_concurrency=2)
    a = await ready_client(http, fg, [0, 2])
    b = await ready_client(http, fg, [1, 2])
    guild = (await b.recv_until(lambda m: m["t"] == "GUILD_CREATE"))["d"]
    voice = next(c["id"] for c in guild["channels"] if c["type"] == 2)
    await b.send(4, {"guild_id": guild["id"], "channel_id": voice})
    await b.recv_until(lambda m: m["t"] == "VOICE_STATE_UPDATE")
    presence = {"since": None, "activities": [], "status": "dnd", "afk": False}
    await a.send(3, presence)
    await fg.wait_for(lambda g: g.stats()["requests_by_op"].get("3") == 1, 5)
    by_shard = {s["shard_id"]: s["requests_by_op"] for s in fg.sessions()}
    assert by_shard == {0: {"3": 1}, 1: {"4": 1}}
    assert fg.stats()["presence_by_shard"] == {"0": "dnd"}
