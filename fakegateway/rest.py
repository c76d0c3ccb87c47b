"""The REST side a client library calls at login: ``/gateway``, ``/gateway/bot``,
``/users/@me``, ``/oauth2/applications/@me``, with Discord's auth errors and injectable
429/5xx answers. Every JSON body is sent as exactly ``application/json`` (discord.py compares
the header by equality)."""

from __future__ import annotations

import math
import time
from typing import Any, Final

import msgspec
from aiohttp import web

from fakegateway.state import STATE_KEY, FakeState
from fakegateway.world import FakeUser

_encoder: Final = msgspec.json.Encoder()
API_VERSIONS: Final = ("v10", "v9")


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {"Content-Type": "application/json"}
    if headers:
        all_headers.update(headers)
    return web.Response(body=_encoder.encode(body), status=status, headers=all_headers)


def unauthorized(state: FakeState) -> web.Response:
    state.stats.rest_unauthorized += 1
    return json_response({"message": "401: Unauthorized", "code": 0}, status=401)


def _fault_response(state: FakeState, path: str) -> web.Response | None:
    faults = state.rest_faults
    for fault in faults:
        if fault.path is not None and not path.endswith(fault.path):
            continue
        fault.count -= 1
        if fault.count <= 0:
            faults.remove(fault)
        state.stats.rest_faults_served += 1
        if fault.status == 429:
            reset_at = time.time() + fault.retry_after
            scope = "global" if fault.is_global else "user"
            headers = {
                "Retry-After": str(max(1, math.ceil(fault.retry_after))),
                "X-RateLimit-Limit": "5" if not fault.is_global else "50",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{reset_at:.3f}",
                "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
                "X-RateLimit-Bucket": "fakegatewaybotbucket",
                "X-RateLimit-Scope": scope,
            }
            if fault.is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {
                "message": "You are being rate limited.",
                "retry_after": fault.retry_after,
                "global": fault.is_global,
            }
            return json_response(body, status=429, headers=headers)
        if fault.status == 500:
            return json_response({"message": "500: Internal Server Error", "code": 0}, 500)
        # 502/503 come from the edge in real life, as HTML: clients must parse defensively.
        text = f"<html><body><h1>{fault.status} Service Unavailable</h1></body></html>"
        return web.Response(text=text, status=fault.status, content_type="text/html")
    return None


def _user_json(bot: FakeUser) -> dict[str, Any]:
    return bot.payload() | {
        "bot": True,
        "verified": True,
        "mfa_enabled": False,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "locale": "en-US",
        "email": None,
        "bio": "",
    }


@web.middleware
async def rest_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count REST calls and serve injected faults before the real handler runs."""
    if request.path.startswith("/api/"):
        state = request.app[STATE_KEY]
        state.stats.rest_requests += 1
        state.changed()
        faulted = _fault_response(state, request.path)
        if faulted is not None:
            return faulted
    response: web.StreamResponse = await handler(request)
    return response


async def get_gateway(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response({"url": state.gateway_url})


async def get_gateway_bot(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    bot = state.authenticate_header(request.headers.get("Authorization"))
    if bot is None:
        return unauthorized(state)
    limit = state.budget.snapshot()
    body = {
        "url": state.gateway_url,
        "shards": state.config.shards,
        "session_start_limit": limit | {"max_concurrency": state.config.max_concurrency},
    }
    return json_response(body)


async def get_me(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    bot = state.authenticate_header(request.headers.get("Authorization"))
    if bot is None:
        return unauthorized(state)
    return json_response(_user_json(bot))


async def get_application(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    bot = state.authenticate_header(request.headers.get("Authorization"))
    if bot is None:
        return unauthorized(state)
    owner = state.world.users[0]
    body: dict[str, Any] = {
        "id": str(bot.id),
        "name": bot.username,
        "icon": None,
        "description": "A bot served by shardmgr's fake gateway",
        "summary": "",
        "type": None,
        "is_monetized": False,
        "is_verified": False,
        "is_discoverable": False,
        "bot_public": True,
        "bot_require_code_grant": False,
        "verify_key": f"{bot.id:064x}"[-64:],
        "flags": 565248,
        "hook": True,
        "integration_public": True,
        "integration_require_code_grant": False,
        "approximate_guild_count": state.config.guild_count,
        "redirect_uris": [],
        "interactions_endpoint_url": None,
        "rpc_origins": [],
        "tags": [],
        "bot": _user_json(bot),
        "owner": owner.payload() | {"flags": 0},
        "team": None,
    }
    return json_response(body)


async def not_found(request: web.Request) -> web.Response:
    return json_response({"message": "404: Not Found", "code": 0}, status=404)


def add_routes(app: web.Application) -> None:
    for version in API_VERSIONS:
        base = f"/api/{version}"
        app.router.add_get(f"{base}/gateway", get_gateway)
        app.router.add_get(f"{base}/gateway/bot", get_gateway_bot)
        app.router.add_get(f"{base}/users/@me", get_me)
        app.router.add_get(f"{base}/oauth2/applications/@me", get_application)
        app.router.add_get(f"{base}/applications/@me", get_application)
    app.router.add_route("*", "/api/{tail:.*}", not_found)
