"""Each injectable fault, through the in-process API and the control API."""

from __future__ import annotations

import json
import zlib

import aiohttp
import pytest

from fakegateway import FakeGateway, FaultError
from tests.unit.fakegateway.client import Closed, GatewayClient, ready_client
from tests.unit.fakegateway.conftest import Factory


def _session(fg: FakeGateway) -> dict:
    (s,) = fg.sessions()
    return s


async def _members_request(client: GatewayClient, ready_guild: str) -> None:
    await client.send(8, {"guild_id": ready_guild, "query": "", "limit": 0})


async def test_zombie_stops_acks_but_not_dispatches(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    guild = (await client.recv_until(lambda m: m["t"] == "GUILD_CREATE"))["d"]["id"]
    assert await fg.inject("zombie", 0) == [0]
    await client.heartbeat()
    await _members_request(client, guild)
    msg = await client.recv_until(lambda m: m["op"] != 0 or m["t"] == "GUILD_MEMBERS_CHUNK")
    assert msg["t"] == "GUILD_MEMBERS_CHUNK"
    assert fg.stats()["heartbeat_acks"] == 0 and fg.stats()["heartbeats"] == 1


async def test_reconnect_sends_op7_then_closes_keeping_session(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    await fg.inject("reconnect", 0)
    msg = await client.recv_until(lambda m: m["op"] != 0)
    assert msg == {"t": None, "s": None, "op": 7, "d": None}
    assert await client.expect_close() == 1001
    await fg.wait_for(lambda g: _session(g)["state"] == "disconnected", 5)


@pytest.mark.parametrize("resumable", [True, False])
async def test_invalid_session_sends_op9(fg: FakeGateway, http, resumable: bool):
    client = await ready_client(http, fg, [0, 2])
    await fg.inject("invalid_session", 0, resumable=resumable)
    msg = await client.recv_until(lambda m: m["op"] != 0)
    assert msg == {"t": None, "s": None, "op": 9, "d": resumable}
    s = _session(fg)
    if resumable:
        assert s["state"] == "disconnected"
    else:
        assert s["state"] == "ended" and s["ended_reason"] == "op9"
        assert s["invalidated_by_server"] is True


@pytest.mark.parametrize(("code", "state"), [(4000, "disconnected"), (4009, "ended")])
async def test_close_with_code(fg: FakeGateway, http, code: int, state: str):
    client = await ready_client(http, fg, [0, 2])
    await fg.inject("close", 0, code=code)
    assert await client.expect_close() == code
    assert _session(fg)["state"] == state
    assert fg.stats()["faults_injected"] == {"close": 1}


async def test_cut_drops_tcp_without_close_frame(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    await fg.inject("cut", 0)
    with pytest.raises(Closed) as info:
        await client.recv_until(lambda m: False)
    assert info.value.code == 1006
    await fg.wait_for(lambda g: g.stats()["connections_open"] == 0, 5)
    assert _session(fg)["state"] == "disconnected"
    assert fg.stats()["client_closes_by_code"] == {}
    assert fg.stats()["closes_by_code"] == {"1006": 1}


async def test_stall_sends_nothing_while_sequence_numbers_advance(make_gateway, http):
    fg = await make_gateway(event_rate=100)
    client = await ready_client(http, fg)
    await fg.inject("stall", 0)
    await client.heartbeat()
    await fg.wait_for(lambda g: g.stats()["heartbeats"] == 1, 5)
    sent = _session(fg)["last_seq_sent"]
    await fg.wait_for(lambda g: _session(g)["last_seq"] > sent + 10, 5)
    assert fg.stats()["heartbeat_acks"] == 0
    assert _session(fg)["last_seq_sent"] == sent


async def test_bad_json_arrives_as_undecodable_message(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2], compress="zlib-stream")
    await fg.inject("bad_json", 0)
    with pytest.raises(json.JSONDecodeError):
        await client.recv_until(lambda m: False)


async def test_bad_compression_breaks_the_clients_inflater(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2], compress="zlib-stream")
    await fg.inject("bad_compression", 0)
    with pytest.raises(zlib.error):
        await client.recv_until(lambda m: False)


async def test_oversized_sends_one_dispatch_larger_than_asked(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2], compress="zstd-stream")
    await fg.inject("oversized", 0, bytes=300_000)
    msg = await client.recv_until(lambda m: m["t"] == "MESSAGE_CREATE")
    assert len(msg["d"]["content"]) >= 300_000
    assert msg["s"] == _session(fg)["last_seq"]


async def test_no_suffix_streams_zlib_data_that_never_flushes(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2], compress="zlib-stream")
    last = _session(fg)["last_seq"]
    while client.seq != last:
        await client.recv()
    await fg.inject("no_suffix", 0, bytes=200_000)
    received = 0
    while received < 190_000:
        raw = await client.ws.receive(5)
        assert raw.type == aiohttp.WSMsgType.BINARY
        assert not raw.data.endswith(b"\x00\x00\xff\xff")
        received += len(raw.data)


async def test_hello_reconnect_replaces_hello_on_next_connection(fg: FakeGateway, http):
    assert await fg.inject("hello_reconnect", count=1) == []
    first = await GatewayClient.connect(http, fg.gateway_url)
    assert (await first.recv())["op"] == 7
    second = await GatewayClient.connect(http, fg.gateway_url)
    assert (await second.recv())["op"] == 10


async def test_heartbeat_request_sends_server_op1(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    await fg.inject("heartbeat_request", 0)
    msg = await client.recv_until(lambda m: m["op"] != 0)
    assert msg["op"] == 1
    await client.heartbeat()
    assert (await client.recv_until(lambda m: m["op"] != 0))["op"] == 11


async def test_null_shard_hits_every_connected_shard(make_gateway: Factory, http):
    fg = await make_gateway(shards=2, max_concurrency=2)
    a = await ready_client(http, fg, [0, 2])
    b = await ready_client(http, fg, [1, 2])
    assert sorted(await fg.inject("close", None, code=4000)) == [0, 1]
    assert await a.expect_close() == 4000 and await b.expect_close() == 4000


async def test_unknown_fault_kind_is_rejected(fg: FakeGateway):
    with pytest.raises(FaultError):
        await fg.inject("meteor", 0)


async def test_control_api_injects_and_logs_faults(fg: FakeGateway, http):
    client = await ready_client(http, fg, [1, 2])
    body = {"kind": "close", "shard_id": 1, "code": 4001}
    async with http.post(f"{fg.base_url}/_fake/faults", json=body) as r:
        assert r.status == 200
        assert await r.json() == {"kind": "close", "shards": [1]}
    assert await client.expect_close() == 4001
    async with http.get(f"{fg.base_url}/_fake/faults") as r:
        log = (await r.json())["log"]
    assert [(e["kind"], e["shard_id"], e["code"], e["source"]) for e in log] == [
        ("close", 1, 4001, "api")
    ]


async def test_control_api_rejects_bad_fault_requests(fg: FakeGateway, http):
    for body in ({"kind": "meteor"}, {"shard_id": 0}, {"kind": "close", "code": "x"}):
        async with http.post(f"{fg.base_url}/_fake/faults", json=body) as r:
            assert r.status == 400, body
            assert "error" in await r.json()
