"""Identify: READY and the GUILD_CREATE burst, concurrency buckets, the session budget."""

from __future__ import annotations

import re

from fakegateway import FakeGateway
from fakegateway.world import shard_for
from tests.unit.fakegateway.client import GatewayClient, ready_client
from tests.unit.fakegateway.conftest import Factory
from workers.clock import FakeClock


async def test_ready_has_session_resume_url_shard_and_unavailable_guilds(fg: FakeGateway, http):
    client = await GatewayClient.connect(http, fg.gateway_url)
    await client.recv()
    await client.identify([1, 2])
    msg = await client.recv()
    assert msg["t"] == "READY" and msg["s"] == 1
    d = msg["d"]
    assert re.fullmatch(r"[0-9a-f]{32}", d["session_id"])
    assert d["resume_gateway_url"] == fg.resume_gateway_url != fg.gateway_url
    assert d["shard"] == [1, 2]
    assert d["v"] == 10 and d["user"]["bot"] is True
    assert d["guilds"] and all(g["unavailable"] is True for g in d["guilds"])
    assert all(shard_for(int(g["id"]), 2) == 1 for g in d["guilds"])


async def test_one_guild_create_per_guild_of_the_shard_with_contiguous_seqs(fg, http):
    client = await GatewayClient.connect(http, fg.gateway_url)
    await client.recv()
    await client.identify([0, 2])
    ready = (await client.recv())["d"]
    expected = {g["id"] for g in ready["guilds"]}
    seen: set[str] = set()
    seqs = [1]
    while seen != expected:
        msg = await client.recv()
        assert msg["t"] == "GUILD_CREATE"
        seqs.append(msg["s"])
        seen.add(msg["d"]["id"])
        assert msg["d"]["channels"] and msg["d"]["members"]
    assert seqs == list(range(1, len(expected) + 2))


async def test_guilds_are_split_across_shards_by_the_routing_formula(make_gateway: Factory, http):
    fg = await make_gateway(shards=3, guilds=60, max_concurrency=3)
    placed: list[str] = []
    for shard in range(3):
        client = await GatewayClient.connect(http, fg.gateway_url)
        ready = await client.ready([shard, 3])
        ids = [g["id"] for g in ready["guilds"]]
        assert all(shard_for(int(g), 3) == shard for g in ids)
        placed += ids
    assert len(placed) == len(set(placed)) == 60


async def test_unavailable_guilds_arrive_as_guild_delete(make_gateway: Factory, http):
    fg = await make_gateway(guilds=10, unavailable_fraction=1.0)
    client = await ready_client(http, fg)
    msg = await client.recv()
    assert msg["t"] == "GUILD_DELETE" and msg["d"]["unavailable"] is True


async def test_identify_in_same_bucket_within_window_gets_op9_false(make_gateway: Factory, http):
    fg = await make_gateway(shards=2, identify_window_s=30.0)
    await ready_client(http, fg, [0, 2])
    second = await GatewayClient.connect(http, fg.gateway_url)
    await second.recv()
    await second.identify([1, 2])
    msg = await second.recv()
    assert msg == {"t": None, "s": None, "op": 9, "d": False}
    stats = fg.stats()
    assert stats["identify_violations"] == 1 and stats["identifies"] == 1
    outcomes = [(e["shard_id"], e["outcome"]) for e in fg.identify_log()]
    assert outcomes == [(0, "ok"), (1, "violation")]


async def test_different_buckets_identify_together(make_gateway: Factory, http):
    fg = await make_gateway(shards=2, max_concurrency=2, identify_window_s=30.0)
    await ready_client(http, fg, [0, 2])
    await ready_client(http, fg, [1, 2])
    assert fg.stats()["identify_violations"] == 0
    assert [e["bucket"] for e in fg.identify_log()] == [0, 1]


async def test_same_bucket_identifies_again_after_the_window(make_gateway: Factory, http):
    clock = FakeClock()
    fg = await make_gateway(clock=clock, shards=2, identify_window_s=5.0, heartbeat_interval_s=1e3)
    await ready_client(http, fg, [0, 2])
    await clock.advance(5.0)
    await ready_client(http, fg, [1, 2])
    assert fg.stats()["identify_violations"] == 0


async def test_identify_after_violation_op9_on_same_socket_succeeds(make_gateway: Factory, http):
    clock = FakeClock()
    fg = await make_gateway(clock=clock, shards=2, identify_window_s=5.0, heartbeat_interval_s=1e3)
    await ready_client(http, fg, [0, 2])
    second = await GatewayClient.connect(http, fg.gateway_url)
    await second.recv()
    await second.identify([1, 2])
    await fg.wait_for(lambda g: g.stats()["identify_violations"] == 1, 5)
    await clock.advance(5.0)
    assert (await second.recv())["op"] == 9
    await second.identify([1, 2])
    assert (await second.recv())["t"] == "READY"


async def test_exhausted_budget_resets_token(make_gateway: Factory, http):
    fg = await make_gateway(shards=2, max_concurrency=2, session_start_total=1)
    first = await ready_client(http, fg, [0, 2])
    second = await GatewayClient.connect(http, fg.gateway_url)
    await second.recv()
    await second.identify([1, 2])
    assert await second.expect_close() == 4004
    assert await first.expect_close() == 4004
    stats = fg.stats()
    assert stats["token_reset"] is True and stats["session_start_remaining"] == 0
    async with http.get(f"{fg.api_base}/gateway/bot", headers={"Authorization": "Bot x.y.z"}) as r:
        assert r.status == 401
    (session,) = fg.sessions()
    assert session["ended_reason"] == "token_reset" and session["invalidated_by_server"]


async def test_exhausted_budget_without_token_reset_answers_op9(make_gateway: Factory, http):
    fg = await make_gateway(session_start_total=0, token_reset_on_exhaustion=False)
    client = await GatewayClient.connect(http, fg.gateway_url)
    await client.recv()
    await client.identify()
    assert (await client.recv())["op"] == 9
    assert fg.stats()["token_reset"] is False


async def test_session_json_has_the_ground_truth_fields(fg: FakeGateway, http):
    client = await ready_client(http, fg, [1, 2])
    await fg.wait_for(lambda g: g.sessions()[0]["last_seq_sent"] >= 1, 5)
    (s,) = fg.sessions()
    assert s["shard_id"] == 1 and s["num_shards"] == 2
    assert s["session_id"] == client.session_id
    assert s["state"] == "active" and s["connected"] is True
    assert s["first_seq"] == 1 and s["resumes"] == 0 and s["identifies"] == 1
    assert s["ended_reason"] is None and s["invalidated_by_server"] is False
    assert isinstance(s["identified_at"], float)
