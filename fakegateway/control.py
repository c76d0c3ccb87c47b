"""The ``/_fake/...`` HTTP routes: ground truth (sessions, stats, identify and fault logs)
and run-time control (faults, REST faults, traffic rate, chaos, budget, token)."""

from __future__ import annotations

from typing import Any, Final, Protocol

import msgspec
from aiohttp import web

from fakegateway.faults import FaultError
from fakegateway.inject import InjectError
from fakegateway.rest import json_response
from fakegateway.state import REST_FAULT_STATUSES, FakeState


class Controller(Protocol):
    """What the control routes need from the server object (``FakeGateway``)."""

    @property
    def state(self) -> FakeState: ...

    def sessions(self) -> list[dict[str, Any]]: ...

    def stats(self) -> dict[str, Any]: ...

    def config_json(self) -> dict[str, Any]: ...

    def chaos_json(self) -> dict[str, Any] | None: ...

    async def inject(self, kind: str, shard_id: int | None = None, **params: Any) -> list[int]: ...

    def add_rest_fault(
        self,
        status: int,
        count: int = 1,
        retry_after: float = 1.0,
        is_global: bool = False,
        path: str | None = None,
    ) -> None: ...

    def set_event_rate(self, rate: float) -> None: ...

    async def set_chaos(
        self,
        seed: int | None,
        interval_s: float | None = None,
        weights: dict[str, int] | None = None,
    ) -> None: ...

    def set_budget(self, remaining: int | None = None, total: int | None = None) -> None: ...

    def set_recommendation(
        self, shards: int, max_guilds_per_shard: int | None = None
    ) -> dict[str, int]: ...

    def set_token(self, token: str | None) -> None: ...

    def rest_stats(self) -> dict[str, Any]: ...

    def messages(self, channel_id: int | str | None = None) -> list[dict[str, Any]]: ...

    def interactions(self) -> list[dict[str, Any]]: ...

    def dispatch(self, t: str, **fields: Any) -> dict[str, Any]: ...


CONTROL_KEY: Final = web.AppKey("fake_control", Controller)
_decoder: Final = msgspec.json.Decoder(dict[str, Any])


class BadRequest(Exception):
    pass


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body must be a JSON object: {exc}") from exc


def _bad(message: str) -> web.Response:
    return json_response({"error": message}, status=400)


def _number(body: dict[str, Any], name: str, default: float | None = None) -> float | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BadRequest(f"{name} must be a non-negative number")
    return float(value)


def _opt_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer or null")
    return value


async def get_sessions(request: web.Request) -> web.Response:
    return json_response(request.app[CONTROL_KEY].sessions())


async def get_stats(request: web.Request) -> web.Response:
    return json_response(request.app[CONTROL_KEY].stats())


async def get_config(request: web.Request) -> web.Response:
    return json_response(request.app[CONTROL_KEY].config_json())


async def get_identifies(request: web.Request) -> web.Response:
    return json_response(list(request.app[CONTROL_KEY].state.identify_log))


async def get_faults(request: web.Request) -> web.Response:
    ctl = request.app[CONTROL_KEY]
    state = ctl.state
    return json_response(
        {
            "log": list(state.fault_log),
            "chaos": ctl.chaos_json(),
            "hello_reconnects_pending": state.hello_reconnects,
        }
    )


async def post_fault(request: web.Request) -> web.Response:
    ctl = request.app[CONTROL_KEY]
    try:
        body = await _body(request)
        kind = body.pop("kind", None)
        if not isinstance(kind, str):
            raise BadRequest("kind is required (a fault kind name)")
        shard_id = _opt_int(body, "shard_id")
        body.pop("shard_id", None)
        shards = await ctl.inject(kind, shard_id, **body)
    except (BadRequest, FaultError, TypeError) as exc:
        return _bad(str(exc))
    return json_response({"kind": kind, "shards": shards})


async def get_rest_faults(request: web.Request) -> web.Response:
    return json_response([f.to_json() for f in request.app[CONTROL_KEY].state.rest_faults])


async def post_rest_fault(request: web.Request) -> web.Response:
    ctl = request.app[CONTROL_KEY]
    try:
        body = await _body(request)
        status = body.get("status")
        if status not in REST_FAULT_STATUSES:
            raise BadRequest(f"status must be one of {', '.join(map(str, REST_FAULT_STATUSES))}")
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BadRequest("count must be a positive integer")
        retry_after = _number(body, "retry_after", 1.0)
        is_global = bool(body.get("global", False))
        path = body.get("path")
        if path is not None and not isinstance(path, str):
            raise BadRequest("path must be a string (a suffix of the request path) or null")
    except BadRequest as exc:
        return _bad(str(exc))
    ctl.add_rest_fault(status, count, retry_after or 0.0, is_global, path)
    return json_response({"queued": [f.to_json() for f in ctl.state.rest_faults]})


async def delete_rest_faults(request: web.Request) -> web.Response:
    request.app[CONTROL_KEY].state.rest_faults.clear()
    return json_response({"queued": []})


async def post_traffic(request: web.Request) -> web.Response:
    ctl = request.app[CONTROL_KEY]
    try:
        rate = _number(await _body(request), "event_rate")
        if rate is None:
            raise BadRequest("event_rate is required")
    except BadRequest as exc:
        return _bad(str(exc))
    ctl.set_event_rate(rate)
    return json_response({"event_rate": rate})


async def get_chaos(request: web.Request) -> web.Response:
    return json_response(request.app[CONTROL_KEY].chaos_json())


async def post_chaos(request: web.Request) -> web.Response:
    ctl = request.app[CONTROL_KEY]
    try:
        body = await _body(request)
        seed = _opt_int(body, "seed")
        interval = _number(body, "interval_s")
        if interval is not None and interval <= 0:
            raise BadRequest("interval_s must be positive")
        weights = body.get("weights")
        if weights is not None and not (
            isinstance(weights, dict)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in weights.values())
        ):
            raise BadRequest("weights must map chaos kinds to integers")
        await ctl.set_chaos(seed, interval, weights)
    except (BadRequest, FaultError) as exc:
        return _bad(str(exc))
    return json_response(ctl.chaos_json())


async def post_budget(request: web.Request) -> web.Response:
    ctl = request.app[CONTROL_KEY]
    try:
        body = await _body(request)
        remaining = _opt_int(body, "remaining")
        total = _opt_int(body, "total")
        if (remaining is not None and remaining < 0) or (total is not None and total < 0):
            raise BadRequest("remaining and total must not be negative")
    except BadRequest as exc:
        return _bad(str(exc))
    ctl.set_budget(remaining, total)
    return json_response(ctl.state.budget.snapshot())


async def post_recommend(request: web.Request) -> web.Response:
    ctl = request.app[CONTROL_KEY]
    try:
        body = await _body(request)
        shards = _opt_int(body, "shards")
        if shards is None:
            raise BadRequest("shards is required (the recommended shard count)")
        answer = ctl.set_recommendation(shards, _opt_int(body, "max_guilds_per_shard"))
    except (BadRequest, ValueError) as exc:
        return _bad(str(exc))
    return json_response(answer)


async def post_token(request: web.Request) -> web.Response:
    ctl = request.app[CONTROL_KEY]
    try:
        body = await _body(request)
        token = body.get("token")
        if token is not None and not isinstance(token, str):
            raise BadRequest("token must be a string or null")
        ctl.set_token(token)
    except (BadRequest, ValueError) as exc:
        return _bad(str(exc))
    return json_response({"token_reset": ctl.state.token_reset})


async def get_guilds(request: web.Request) -> web.Response:
    state = request.app[CONTROL_KEY].state
    try:
        num_shards = int(request.query.get("num_shards", "1"))
        shard_id = request.query.get("shard_id")
        if num_shards < 1:
            raise ValueError
    except ValueError:
        return _bad("num_shards must be a positive integer")
    if shard_id is not None:
        try:
            guilds = state.world.guilds_for(int(shard_id), num_shards)
        except ValueError:
            return _bad("shard_id must be an integer")
        return json_response([str(g.id) for g in guilds])
    counts = [len(state.world.guilds_for(i, num_shards)) for i in range(num_shards)]
    return json_response({"guilds": len(state.world.guilds), "per_shard": counts})


async def get_rest(request: web.Request) -> web.Response:
    return json_response(request.app[CONTROL_KEY].rest_stats())


async def get_messages(request: web.Request) -> web.Response:
    channel = request.query.get("channel_id")
    if channel is not None and not channel.isdigit():
        return _bad("channel_id must be a snowflake")
    return json_response(request.app[CONTROL_KEY].messages(channel))


async def get_interactions(request: web.Request) -> web.Response:
    return json_response(request.app[CONTROL_KEY].interactions())


async def post_dispatch(request: web.Request) -> web.Response:
    ctl = request.app[CONTROL_KEY]
    try:
        body = await _body(request)
        event = body.pop("t", None)
        if not isinstance(event, str):
            raise BadRequest("t is required (the event name, e.g. MESSAGE_CREATE)")
        answer = ctl.dispatch(event, **body)
    except (BadRequest, InjectError) as exc:
        return _bad(str(exc))
    return json_response(answer)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_fake/sessions", get_sessions)
    r.add_get("/_fake/stats", get_stats)
    r.add_get("/_fake/config", get_config)
    r.add_get("/_fake/identifies", get_identifies)
    r.add_get("/_fake/faults", get_faults)
    r.add_post("/_fake/faults", post_fault)
    r.add_get("/_fake/rest-faults", get_rest_faults)
    r.add_post("/_fake/rest-faults", post_rest_fault)
    r.add_delete("/_fake/rest-faults", delete_rest_faults)
    r.add_post("/_fake/traffic", post_traffic)
    r.add_get("/_fake/chaos", get_chaos)
    r.add_post("/_fake/chaos", post_chaos)
    r.add_post("/_fake/budget", post_budget)
    r.add_post("/_fake/recommend", post_recommend)
    r.add_post("/_fake/token", post_token)
    r.add_get("/_fake/guilds", get_guilds)
    r.add_get("/_fake/rest", get_rest)
    r.add_get("/_fake/messages", get_messages)
    r.add_get("/_fake/interactions", get_interactions)
    r.add_post("/_fake/dispatch", post_dispatch)
