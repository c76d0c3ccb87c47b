"""The REST side's frame: the middleware every ``/api/`` request passes (counters, injected
faults, rate limits and their ``X-RateLimit-*`` headers, Discord's JSON errors), the login
routes (``/gateway``, ``/gateway/bot``, ``/users/@me``, the application) and the unknown
route. Every JSON body is sent as exactly ``application/json`` (discord.py compares the
header by equality). The resource routes live in ``rest_channels`` and ``rest_apps``."""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec
from aiohttp import web

from fakegateway.ratelimit import Decision
from fakegateway.state import STATE_KEY, FakeState
from fakegateway.world import FakeUser

_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder()
API_VERSIONS: Final = ("v10", "v9")
UNKNOWN_ROUTE: Final = "(unknown route)"
# Injected faults answered with Discord's JSON error: (message, code).
JSON_FAULTS: Final = {
    401: ("401: Unauthorized", 0),
    403: ("Missing Permissions", 50013),
    404: ("404: Not Found", 0),
    500: ("500: Internal Server Error", 0),
}
# Answers that count toward Cloudflare's invalid-request limit.
INVALID_STATUSES: Final = frozenset({401, 403, 429})


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {"Content-Type": "application/json"}
    if headers:
        all_headers.update(headers)
    return web.Response(body=_encoder.encode(body), status=status, headers=all_headers)


class ApiError(Exception):
    """Raised by a route: Discord's JSON error ``{"message", "code"[, "errors"]}``."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def response(self) -> web.Response:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return json_response(body, status=self.status)


UNAUTHORIZED: Final = (401, 0, "401: Unauthorized")
NOT_FOUND: Final = (404, 0, "404: Not Found")


def require_bot(request: web.Request) -> FakeUser:
    """The bot the request's ``Authorization: Bot <token>`` belongs to, or a 401."""
    state = request.app[STATE_KEY]
    bot = state.authenticate_header(request.headers.get("Authorization"))
    if bot is None:
        state.stats.rest_unauthorized += 1
        raise ApiError(*UNAUTHORIZED)
    return bot


def decode_json(raw: bytes) -> Any:
    try:
        return _decoder.decode(raw) if raw else {}
    except msgspec.DecodeError:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from None


async def json_body(request: web.Request) -> Any:
    return decode_json(await request.read())


def snowflake_param(request: web.Request, name: str, unknown: tuple[int, int, str]) -> int:
    """A path id; one that is not a number is as unknown as a missing one."""
    text = request.match_info[name]
    if not text.isdigit():
        raise ApiError(*unknown)
    return int(text)


def route_of(request: web.Request) -> str:
    """``"POST /channels/{channel_id}/messages"``: method and template without the API
    prefix (the key of ``by_route`` and of the rate-limit buckets)."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else ""
    parts = canonical.split("/", 3)
    if len(parts) < 4 or parts[2] not in API_VERSIONS:
        return f"{request.method} {UNKNOWN_ROUTE}"
    return f"{request.method} /{parts[3]}"


def major_of(request: web.Request) -> str:
    """The top-level resource that splits a route's bucket (Discord's major parameters)."""
    info = request.match_info
    for name in ("channel_id", "guild_id"):
        if name in info:
            return f"{name}={info[name]}"
    for name, token in (("webhook_id", "webhook_token"), ("interaction_id", "interaction_token")):
        if name in info:
            return f"{name}={info[name]}/{info.get(token, '')}"
    return ""


def _limit_headers(state: FakeState, decision: Decision) -> dict[str, str]:
    headers = {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": f"{state.epoch(decision.reset_after):.3f}",
        "X-RateLimit-Reset-After": f"{decision.reset_after:.3f}",
        "X-RateLimit-Bucket": decision.bucket,
    }
    if decision.scope is not None:
        headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
        headers["X-RateLimit-Scope"] = decision.scope
        if decision.scope == "global":
            headers["X-RateLimit-Global"] = "true"
    return headers


def _too_many(decision: Decision) -> web.Response:
    is_global = decision.scope == "global"
    body = {
        "message": "You are being rate limited.",
        "retry_after": round(decision.retry_after, 3),
        "global": is_global,
    }
    if not is_global:
        body["code"] = 0
    return json_response(body, status=429)


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
            scope = "global" if fault.is_global else "user"
            headers = {
                "Retry-After": str(max(1, math.ceil(fault.retry_after))),
                "X-RateLimit-Limit": "5" if not fault.is_global else "50",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{state.epoch(fault.retry_after):.3f}",
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
        if fault.status in JSON_FAULTS:
            message, code = JSON_FAULTS[fault.status]
            return json_response({"message": message, "code": code}, fault.status)
        # 502/503 come from the edge in real life, as HTML: clients must parse defensively.
        text = f"<html><body><h1>{fault.status} Service Unavailable</h1></body></html>"
        return web.Response(text=text, status=fault.status, content_type="text/html")
    return None


@web.middleware
async def rest_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count every ``/api/`` request, serve injected faults, enforce the rate limits and
    put their headers on every answer, and turn ``ApiError`` into Discord's JSON error."""
    if not request.path.startswith("/api/"):
        response: web.StreamResponse = await handler(request)
        return response
    state = request.app[STATE_KEY]
    counters = state.rest
    route = route_of(request)
    state.stats.rest_requests += 1
    counters.requests += 1
    counters.by_route[route] += 1
    state.changed()
    faulted = _fault_response(state, request.path)
    if faulted is not None:
        _count_answer(state, faulted.status)
        return faulted
    decision = state.rate_limits.decide(route, major_of(request))
    counters.limit_violations += int(decision.bucket_exhausted)
    counters.global_violations += int(decision.global_exhausted)
    if not decision.allowed:
        response = _too_many(decision)
    else:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
    response.headers.update(_limit_headers(state, decision))
    _count_answer(state, response.status)
    return response


def _count_answer(state: FakeState, status: int) -> None:
    if status in INVALID_STATUSES:
        state.rest.invalid_requests += 1
    if status == 429:
        state.rest.rate_limited += 1


async def get_gateway(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response({"url": state.gateway_url})


async def get_gateway_bot(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    require_bot(request)
    limit = state.budget.snapshot()
    body = {
        "url": state.gateway_url,
        "shards": state.recommended_shards,
        "session_start_limit": limit | {"max_concurrency": state.config.max_concurrency},
    }
    return json_response(body)


def user_json(user: FakeUser, *, bot: bool = False) -> dict[str, Any]:
    """A full user object (``GET /users/...``)."""
    return user.payload() | {
        "bot": bot,
        "verified": True,
        "mfa_enabled": False,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "locale": "en-US",
        "email": None,
        "bio": "",
    }


async def get_me(request: web.Request) -> web.Response:
    return json_response(user_json(require_bot(request), bot=True))


def application_json(state: FakeState, bot: FakeUser) -> dict[str, Any]:
    """The application object with every field client libraries read (hikari's
    ``fetch_application`` and discord.py's ``application_info`` among them)."""
    owner = state.world.users[0]
    install = {"scopes": ["applications.commands", "bot"], "permissions": "2048"}
    return {
        "id": str(bot.id),
        "name": bot.username,
        "icon": None,
        "description": "A bot served by the fake Discord",
        "summary": "",
        "type": None,
        "cover_image": None,
        "slug": None,
        "guild_id": None,
        "primary_sku_id": None,
        "is_monetized": False,
        "is_verified": False,
        "is_discoverable": False,
        "storefront_available": False,
        "bot_public": True,
        "bot_require_code_grant": False,
        "verify_key": f"{bot.id:064x}"[-64:],
        "flags": 565248,
        "hook": True,
        "integration_public": True,
        "integration_require_code_grant": False,
        "approximate_guild_count": state.config.guild_count,
        "approximate_user_install_count": 0,
        "approximate_user_authorization_count": 0,
        "redirect_uris": [],
        "interactions_endpoint_url": None,
        "role_connections_verification_url": None,
        "event_webhooks_url": None,
        "event_webhooks_status": 1,
        "event_webhooks_types": [],
        "terms_of_service_url": None,
        "privacy_policy_url": None,
        "custom_install_url": None,
        "install_params": install,
        "integration_types_config": {"0": {"oauth2_install_params": install}, "1": {}},
        "rpc_origins": [],
        "tags": [],
        "bot": user_json(bot, bot=True),
        "owner": owner.payload() | {"flags": 0},
        "team": None,
    }


async def get_application(request: web.Request) -> web.Response:
    bot = require_bot(request)
    return json_response(application_json(request.app[STATE_KEY], bot))


async def not_found(request: web.Request) -> web.Response:
    """Discord checks the token before it looks the route up."""
    require_bot(request)
    raise ApiError(*NOT_FOUND)


def add_routes(app: web.Application) -> None:
    """The login routes: added before the resource routes, so that ``/users/@me`` wins over
    ``/users/{user_id}``; ``add_catch_all`` goes after every real route."""
    for version in API_VERSIONS:
        base = f"/api/{version}"
        app.router.add_get(f"{base}/gateway", get_gateway)
        app.router.add_get(f"{base}/gateway/bot", get_gateway_bot)
        app.router.add_get(f"{base}/users/@me", get_me)
        app.router.add_get(f"{base}/oauth2/applications/@me", get_application)
        app.router.add_get(f"{base}/applications/@me", get_application)


def add_catch_all(app: web.Application) -> None:
    app.router.add_route("*", "/api/{tail:.*}", not_found)
