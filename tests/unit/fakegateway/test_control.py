"""The /_fake control API and seeded chaos."""

from __future__ import annotations

import pytest

from fakegateway import FakeGateway, make_token
from tests.unit.fakegateway.client import GatewayClient, ready_client
from tests.unit.fakegateway.conftest import Factory
from workers.clock import FakeClock


async def test_sessions_and_stats_routes_match_in_process_views(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    await client.close(4000)
    await fg.wait_for(lambda g: g.stats()["connections_open"] == 0, 5)
    async with http.get(f"{fg.base_url}/_fake/sessions") as r:
        assert r.headers["Content-Type"] == "application/json"
        assert await r.json() == fg.sessions()
    async with http.get(f"{fg.base_url}/_fake/stats") as r:
        stats = await r.json()
    assert stats == fg.stats()
    for key in (
        "identifies",
        "resumes",
        "identify_violations",
        "connections_open",
        "connections_total",
        "dispatches_sent",
        "closes_by_code",
        "faults_injected",
        "session_start_remaining",
    ):
        assert key in stats


async def test_identifies_route_lists_outcomes(fg: FakeGateway, http):
    await ready_client(http, fg, [1, 2])
    async with http.get(f"{fg.base_url}/_fake/identifies") as r:
        (entry,) = await r.json()
    assert entry["shard_id"] == 1 and entry["outcome"] == "ok" and entry["bucket"] == 0


async def test_budget_route_sets_remaining(fg: FakeGateway, http):
    async with http.post(f"{fg.base_url}/_fake/budget", json={"remaining": 7}) as r:
        assert (await r.json())["remaining"] == 7
    assert fg.stats()["session_start_remaining"] == 7


async def test_token_route_recovers_from_a_token_reset(make_gateway: Factory, http):
    fg = await make_gateway(session_start_total=0)
    client = await GatewayClient.connect(http, fg.gateway_url)
    await client.recv()
    await client.identify()
    assert await client.expect_close() == 4004
    fresh = make_token(222222222222222222)
    async with http.post(f"{fg.base_url}/_fake/token", json={"token": fresh}) as r:
        assert (await r.json()) == {"token_reset": False}
    headers = {"Authorization": f"Bot {fresh}"}
    async with http.get(f"{fg.api_base}/users/@me", headers=headers) as r:
        assert r.status == 200


async def test_guilds_route_reports_placement(make_gateway: Factory, http):
    fg = await make_gateway(guilds=40)
    async with http.get(f"{fg.base_url}/_fake/guilds?num_shards=4") as r:
        body = await r.json()
    assert body["guilds"] == 40 and sum(body["per_shard"]) == 40 and len(body["per_shard"]) == 4


async def test_chaos_injects_seeded_faults_into_connected_shards(make_gateway: Factory, http):
    clock = FakeClock()
    fg = await make_gateway(clock=clock, shards=2, max_concurrency=2, heartbeat_interval_s=1e4)
    clients = [await ready_client(http, fg, [i, 2]) for i in (0, 1)]
    async with http.post(f"{fg.base_url}/_fake/chaos", json={"seed": 7, "interval_s": 1}) as r:
        assert (await r.json())["seed"] == 7
    await fg.wait_for(lambda g: g.chaos_json() is not None, 5)
    for _ in range(4):
        await clock.advance(1.5)
    log = fg.fault_log()
    assert log and all(e["source"] == "chaos" for e in log)
    assert sum(fg.stats()["faults_injected"].values()) == len(log)
    async with http.post(f"{fg.base_url}/_fake/chaos", json={"seed": None}) as r:
        assert await r.json() is None
    assert len(clients) == 2


async def test_chaos_is_reproducible_from_its_seed(make_gateway: Factory, http):
    weights = {"heartbeat_request": 1, "zombie": 1, "bad_json": 1, "stall": 1}
    runs = []
    for _ in range(2):
        clock = FakeClock()
        fg = await make_gateway(clock=clock, heartbeat_interval_s=1e4)
        client = await ready_client(http, fg)
        await fg.set_chaos(3, 1.0, weights)
        for _ in range(10):
            await clock.advance(1.5)
        runs.append([e["kind"] for e in fg.fault_log()])
        await client.close()
    assert len(runs[0]) >= 5 and runs[0] == runs[1]


async def test_wait_for_times_out_with_the_counters_in_the_message(fg: FakeGateway):
    with pytest.raises(TimeoutError, match=r"never identified not true after 0.05s.*identifies=0"):
        await fg.wait_for(lambda g: g.stats()["identifies"] > 0, 0.05, "never identified")
