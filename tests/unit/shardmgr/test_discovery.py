from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from shardmgr.discovery import DiscoveryFailed, TokenRejected, fetch_gateway_bot
from tests.supervisor.conftest import InstantClock

GOOD = {
    "url": "ws://127.0.0.1:1",
    "shards": 9,
    "session_start_limit": {
        "total": 1000,
        "remaining": 990,
        "reset_after": 14400000,
        "max_concurrency": 4,
    },
}

Responder = Callable[[int, web.Request], web.Response]


class Api:
    def __init__(self) -> None:
        self.responder: Responder = lambda n, req: web.json_response(GOOD)
        self.requests: list[web.Request] = []
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        return self.responder(len(self.requests), request)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    state = Api()
    app = web.Application()
    app.router.add_get("/api/v10/gateway/bot", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.base = f"http://{host}:{port}/api/v10"
    yield state
    await runner.cleanup()


async def test_discovery_returns_url_count_and_limits(api: Api, token: str) -> None:
    info = await fetch_gateway_bot(api.base, token, clock=InstantClock())
    assert info.url == GOOD["url"] and info.recommended_shards == 9
    assert info.limits.max_concurrency == 4 and info.limits.remaining == 990
    assert info.limits.reset_after_s == 14400.0
    assert api.requests[0].headers["Authorization"] == f"Bot {token}"


async def test_429_waits_the_retry_after_from_the_body(api: Api, token: str) -> None:
    def respond(n: int, req: web.Request) -> web.Response:
        if n <= 2:
            return web.json_response(
                {"message": "slow down", "retry_after": 0.25, "global": False},
                status=429,
                headers={"Retry-After": "1"},
            )
        return web.json_response(GOOD)

    api.responder = respond
    clock = InstantClock()
    info = await fetch_gateway_bot(api.base, token, clock=clock)
    assert info.recommended_shards == 9
    assert clock.slept == [0.25, 0.25]


async def test_429_without_body_uses_the_retry_after_header(api: Api, token: str) -> None:
    def respond(n: int, req: web.Request) -> web.Response:
        if n == 1:
            return web.Response(status=429, text="busy", headers={"Retry-After": "3"})
        return web.json_response(GOOD)

    api.responder = respond
    clock = InstantClock()
    await fetch_gateway_bot(api.base, token, clock=clock)
    assert clock.slept == [3.0]


async def test_5xx_backs_off_with_jitter_then_succeeds(api: Api, token: str) -> None:
    api.responder = lambda n, req: (
        web.Response(status=502, text="bad gateway") if n <= 3 else web.json_response(GOOD)
    )
    clock = InstantClock()
    await fetch_gateway_bot(api.base, token, clock=clock, backoff_base_s=1.0)
    assert len(clock.slept) == 3
    for attempt, delay in enumerate(clock.slept):
        assert 0.0 <= delay <= 2.0**attempt


async def test_401_stops_at_once(api: Api, token: str) -> None:
    api.responder = lambda n, req: web.json_response(
        {"message": "401: Unauthorized", "code": 0}, status=401
    )
    clock = InstantClock()
    with pytest.raises(TokenRejected, match="the token was rejected"):
        await fetch_gateway_bot(api.base, token, clock=clock)
    assert len(api.requests) == 1 and clock.slept == []


async def test_persistent_5xx_gives_up_after_the_attempts(api: Api, token: str) -> None:
    api.responder = lambda n, req: web.Response(status=503)
    with pytest.raises(DiscoveryFailed, match="server error 503"):
        await fetch_gateway_bot(api.base, token, clock=InstantClock(), attempts=3)
    assert len(api.requests) == 3


async def test_malformed_body_is_retried_then_reported(api: Api, token: str) -> None:
    api.responder = lambda n, req: web.json_response({"url": "x"})
    with pytest.raises(DiscoveryFailed, match="unexpected response body"):
        await fetch_gateway_bot(api.base, token, clock=InstantClock(), attempts=2)


async def test_unreachable_api_is_a_user_error(token: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DiscoveryFailed, match="cannot reach"):
        await fetch_gateway_bot(
            f"http://127.0.0.1:{port}/api/v10", token, clock=InstantClock(), attempts=2
        )
