"""Every validation close code, triggered the way a buggy client would trigger it."""

from __future__ import annotations

import aiohttp

from fakegateway import FakeGateway, make_token
from tests.unit.fakegateway.client import TOKEN, GatewayClient, ready_client
from tests.unit.fakegateway.conftest import Factory


async def _hello(http: aiohttp.ClientSession, fg: FakeGateway) -> GatewayClient:
    client = await GatewayClient.connect(http, fg.gateway_url)
    assert (await client.recv())["op"] == 10
    return client


async def test_unknown_opcode_closes_4001(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    await client.send(5, None)
    assert await client.expect_close() == 4001


async def test_known_opcode_with_bad_payload_closes_4001(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    await client.send(3, {"status": 12})
    assert await client.expect_close() == 4001


async def test_invalid_json_closes_4002(fg: FakeGateway, http):
    client = await _hello(http, fg)
    await client.ws.send_str('{"op": 1, "d": ')
    assert await client.expect_close() == 4002


async def test_payload_over_4096_bytes_closes_4002(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    await client.send(
        3,
        {
            "since": None,
            "activities": [{"name": "x" * 4100, "type": 0}],
            "status": "online",
            "afk": False,
        },
    )
    assert await client.expect_close() == 4002


async def test_payload_before_identify_closes_4003(fg: FakeGateway, http):
    client = await _hello(http, fg)
    await client.send(8, {"guild_id": "1", "query": "", "limit": 0})
    assert await client.expect_close() == 4003


async def test_heartbeat_before_identify_is_allowed(fg: FakeGateway, http):
    client = await _hello(http, fg)
    await client.heartbeat()
    assert (await client.recv())["op"] == 11


async def test_bad_token_closes_4004(fg: FakeGateway, http):
    client = await _hello(http, fg)
    await client.identify([0, 2], token="not.a.token")
    assert await client.expect_close() == 4004


async def test_token_with_bot_prefix_closes_4004(fg: FakeGateway, http):
    client = await _hello(http, fg)
    await client.identify([0, 2], token=f"Bot {TOKEN}")
    assert await client.expect_close() == 4004


async def test_wrong_token_for_configured_bot_closes_4004(make_gateway: Factory, http):
    fg = await make_gateway(token=make_token(111111111111111111))
    client = await _hello(http, fg)
    await client.identify()
    assert await client.expect_close() == 4004


async def test_second_identify_closes_4005(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    await client.identify([0, 2])
    assert await client.expect_close() == 4005


async def test_resume_with_seq_ahead_of_server_closes_4007(fg: FakeGateway, http):
    first = await ready_client(http, fg, [0, 2])
    session_id, seq = first.session_id, first.seq
    assert session_id is not None and seq is not None
    await first.close(4000)
    second = await GatewayClient.connect(http, fg.resume_gateway_url)
    await second.recv()
    await second.resume(session_id, seq + 50)
    assert await second.expect_close() == 4007
    (session,) = fg.sessions()
    assert session["state"] == "ended" and session["ended_reason"] == "4007"
    assert session["invalidated_by_server"] is True


async def test_121st_send_within_60s_closes_4008(fg: FakeGateway, http):
    client = await _hello(http, fg)
    for _ in range(121):
        await client.send(1, None)
    assert await client.expect_close() == 4008


async def test_120_sends_within_60s_are_allowed(fg: FakeGateway, http):
    client = await _hello(http, fg)
    for _ in range(120):
        await client.send(1, None)
    acks = 0
    while acks < 120:
        assert (await client.recv())["op"] == 11
        acks += 1
    assert not client.ws.closed


async def test_resume_of_expired_session_closes_4009(make_gateway: Factory, http):
    fg = await make_gateway(session_ttl_s=0.05, shards=2)
    first = await ready_client(http, fg, [0, 2])
    await first.close(4000)
    await fg.wait_for(lambda g: g.sessions()[0]["state"] == "ended", 5)
    assert fg.sessions()[0]["ended_reason"] == "expired"
    second = await GatewayClient.connect(http, fg.resume_gateway_url)
    await second.recv()
    assert first.session_id is not None and first.seq is not None
    await second.resume(first.session_id, first.seq)
    assert await second.expect_close() == 4009


async def test_shard_id_not_below_count_closes_4010(fg: FakeGateway, http):
    client = await _hello(http, fg)
    await client.identify([2, 2])
    assert await client.expect_close() == 4010


async def test_zero_shard_count_closes_4010(fg: FakeGateway, http):
    client = await _hello(http, fg)
    await client.identify([0, 0])
    assert await client.expect_close() == 4010


async def test_shard_count_not_a_large_bot_multiple_closes_4010(make_gateway: Factory, http):
    fg = await make_gateway(large_bot_multiple=16, shards=16)
    client = await _hello(http, fg)
    await client.identify([0, 8])
    assert await client.expect_close() == 4010


async def test_too_many_guilds_on_a_shard_closes_4011(make_gateway: Factory, http):
    fg = await make_gateway(guilds=30, max_guilds_per_shard=10)
    client = await _hello(http, fg)
    await client.identify([0, 1])
    assert await client.expect_close() == 4011


async def test_unsupported_api_version_closes_4012(fg: FakeGateway, http):
    client = await GatewayClient.connect(http, fg.gateway_url, version="6")
    assert await client.expect_close() == 4012


async def test_missing_api_version_closes_4012(fg: FakeGateway, http):
    client = await GatewayClient.connect(http, fg.gateway_url, version=None)
    assert await client.expect_close() == 4012


async def test_undocumented_intent_bits_close_4013(fg: FakeGateway, http):
    client = await _hello(http, fg)
    await client.identify([0, 2], intents=1 << 17)
    assert await client.expect_close() == 4013


async def test_missing_intents_closes_4013(fg: FakeGateway, http):
    client = await _hello(http, fg)
    await client.identify([0, 2], intents=None)
    assert await client.expect_close() == 4013


async def test_privileged_intent_not_enabled_closes_4014(make_gateway: Factory, http):
    fg = await make_gateway(privileged_intents=1 << 1)
    client = await _hello(http, fg)
    await client.identify(intents=1 | (1 << 8))
    assert await client.expect_close() == 4014


async def test_enabled_privileged_intent_is_accepted(make_gateway: Factory, http):
    fg = await make_gateway(privileged_intents=1 << 1)
    client = await ready_client(http, fg, intents=1 | (1 << 1))
    assert client.session_id is not None


async def test_server_closes_are_counted_by_code(fg: FakeGateway, http):
    client = await _hello(http, fg)
    await client.identify([5, 2])
    await client.expect_close()
    await fg.wait_for(lambda g: g.stats()["connections_open"] == 0, 5)
    assert fg.stats()["closes_by_code"] == {"4010": 1}


async def test_unknown_opcode_before_identify_closes_4003(fg: FakeGateway, http):
    client = await _hello(http, fg)
    await client.send(5, None)
    assert await client.expect_close() == 4003
