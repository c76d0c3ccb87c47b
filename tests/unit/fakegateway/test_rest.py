"""REST discovery as client libraries call it at login."""

from __future__ import annotations

import aiohttp

from fakegateway import FakeGateway, make_token
from tests.unit.fakegateway.client import TOKEN, ready_client
from tests.unit.fakegateway.conftest import Factory

AUTH = {"Authorization": f"Bot {TOKEN}"}


async def test_gateway_returns_ws_url_without_auth(fg: FakeGateway, http: aiohttp.ClientSession):
    async with http.get(f"{fg.api_base}/gateway") as r:
        assert r.status == 200
        assert await r.json() == {"url": fg.gateway_url}


async def test_gateway_bot_reports_shards_and_session_start_limit(make_gateway: Factory, http):
    fg = await make_gateway(shards=4, max_concurrency=2, session_start_total=50, reset_after_s=60)
    async with http.get(f"{fg.api_base}/gateway/bot", headers=AUTH) as r:
        body = await r.json()
    assert body == {
        "url": fg.gateway_url,
        "shards": 4,
        "session_start_limit": {
            "total": 50,
            "remaining": 50,
            "reset_after": 60000,
            "max_concurrency": 2,
        },
    }


async def test_json_content_type_is_exactly_application_json(fg: FakeGateway, http):
    paths = (
        "/gateway",
        "/gateway/bot",
        "/users/@me",
        "/oauth2/applications/@me",
        "/applications/@me",
    )
    for path in paths:
        async with http.get(fg.api_base + path, headers=AUTH) as r:
            assert r.headers["Content-Type"] == "application/json", path


async def test_missing_token_gets_401_with_discord_body(fg: FakeGateway, http):
    async with http.get(f"{fg.api_base}/gateway/bot") as r:
        assert r.status == 401
        assert r.headers["Content-Type"] == "application/json"
        assert await r.json() == {"message": "401: Unauthorized", "code": 0}


async def test_malformed_token_gets_401(fg: FakeGateway, http):
    for header in ("Bot not-a-token", f"Bearer {TOKEN}", TOKEN):
        async with http.get(f"{fg.api_base}/users/@me", headers={"Authorization": header}) as r:
            assert r.status == 401, header


async def test_configured_token_is_the_only_one_accepted(make_gateway: Factory, http):
    mine = make_token(123456789012345678)
    fg = await make_gateway(token=mine)
    async with http.get(f"{fg.api_base}/gateway/bot", headers=AUTH) as r:
        assert r.status == 401
    async with http.get(f"{fg.api_base}/users/@me", headers={"Authorization": f"Bot {mine}"}) as r:
        assert r.status == 200
        assert (await r.json())["id"] == "123456789012345678"


async def test_users_me_is_the_bot_user_from_the_token(fg: FakeGateway, http):
    other = make_token(987654321098765432)
    async with http.get(f"{fg.api_base}/users/@me", headers={"Authorization": f"Bot {other}"}) as r:
        body = await r.json()
    assert body["id"] == "987654321098765432"
    assert body["bot"] is True


async def test_application_me_has_bot_and_owner(fg: FakeGateway, http):
    async with http.get(f"{fg.api_base}/oauth2/applications/@me", headers=AUTH) as r:
        body = await r.json()
    assert body["id"] == body["bot"]["id"]
    assert "owner" in body and "verify_key" in body and body["flags"] > 0


async def test_429_rest_fault_answers_count_times_then_recovers(fg: FakeGateway, http):
    fg.add_rest_fault(429, count=2, retry_after=1.5)
    for _ in range(2):
        async with http.get(f"{fg.api_base}/gateway/bot", headers=AUTH) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "2"
            assert r.headers["X-RateLimit-Scope"] == "user"
            assert r.headers["Content-Type"] == "application/json"
            body = await r.json()
            assert body["retry_after"] == 1.5 and body["global"] is False
    async with http.get(f"{fg.api_base}/gateway/bot", headers=AUTH) as r:
        assert r.status == 200
    assert fg.stats()["rest_faults_served"] == 2


async def test_5xx_rest_fault_through_control_api(fg: FakeGateway, http):
    async with http.post(f"{fg.base_url}/_fake/rest-faults", json={"status": 503, "count": 1}) as r:
        assert r.status == 200
    async with http.get(f"{fg.api_base}/gateway/bot", headers=AUTH) as r:
        assert r.status == 503
        assert r.headers["Content-Type"].startswith("text/html")
    async with http.get(f"{fg.api_base}/gateway/bot", headers=AUTH) as r:
        assert r.status == 200


async def test_identify_decrements_session_start_remaining(fg: FakeGateway, http):
    client = await ready_client(http, fg, [0, 2])
    async with http.get(f"{fg.api_base}/gateway/bot", headers=AUTH) as r:
        limit = (await r.json())["session_start_limit"]
    assert limit["remaining"] == 999
    assert 0 < limit["reset_after"] <= 86_400_000
    assert fg.stats()["session_start_remaining"] == 999
    await client.close()


async def test_unknown_api_route_is_json_404(fg: FakeGateway, http):
    async with http.get(f"{fg.api_base}/stickers/packs/nope", headers=AUTH) as r:
        assert r.status == 404
        assert await r.json() == {"message": "404: Not Found", "code": 0}


async def test_injected_403_is_discords_json_error_and_an_invalid_request(fg: FakeGateway, http):
    fg.add_rest_fault(403, path="/messages")
    channel = fg.state.world.guilds[0].text_channels[0]
    url = f"{fg.api_base}/channels/{channel}/messages"
    async with http.post(url, json={"content": "x"}, headers=AUTH) as r:
        assert r.status == 403 and r.headers["Content-Type"] == "application/json"
        assert await r.json() == {"message": "Missing Permissions", "code": 50013}
    assert fg.rest_stats()["invalid_requests"] == 1
    async with http.post(url, json={"content": "x"}, headers=AUTH) as r:
        assert r.status == 200
