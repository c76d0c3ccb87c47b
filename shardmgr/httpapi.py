"""The supervisor's HTTP port: /metrics, /livez, /healthz, /readyz, /status, POST /restart,
POST /presence, POST /shards/{id}/send and POST /dead-letters/replay.

/livez answers whenever the supervisor's event loop does (a liveness probe for the
supervisor process); /healthz (every worker up) and /readyz (every shard connected) are
about the bot, and fail during ordinary worker restarts."""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeVar

import msgspec
from aiohttp import web

from shardmgr.errors import UserError
from shardmgr.httpguard import (
    ACCEPT_BATCH,
    BACKLOG,
    BODY_TIMEOUT_S,
    ConnectionGuard,
)
from shardmgr.logthrottle import LogThrottle
from shardmgr.poison import ReplayOutcome
from shardmgr.reshard import Trigger
from workers.logsetup import fields
from workers.protocol import CLIENT_OPS, MAX_CLIENT_PAYLOAD, Op, parse_presence_status

# The shard owns its session: an operator's Identify or Resume would fight it.
_SESSION_OPS: Final = frozenset({Op.IDENTIFY, Op.RESUME})
_SENDABLE_OPS: Final = sorted(int(op) for op in CLIENT_OPS - _SESSION_OPS)
_MAX_BODY: Final = 64 * 1024
_T = TypeVar("_T")


class _Activity(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    type: int = 0
    url: str | None = None
    state: str | None = None


class _Presence(msgspec.Struct, forbid_unknown_fields=True):
    status: str = "online"
    activities: list[_Activity] = []
    afk: bool = False
    since: int | None = None


class _Packet(msgspec.Struct, forbid_unknown_fields=True):
    op: int
    d: msgspec.Raw = msgspec.Raw(b"null")


class _Replay(msgspec.Struct, forbid_unknown_fields=True):
    shard_id: int
    seq: int


_REPLAY_STATUS: Final = {
    ReplayOutcome.DONE: 200,
    ReplayOutcome.FAILED: 500,
    ReplayOutcome.NOT_FOUND: 404,
    ReplayOutcome.NOT_RUNNING: 503,
    ReplayOutcome.TIMEOUT: 504,
}


class CommandSource(Protocol):
    def runs_shard(self, shard_id: int) -> bool: ...
    async def send_command(self, shard_id: int, op: int, d: bytes) -> bool: ...
    async def broadcast_command(self, op: int, d: bytes) -> tuple[int, int]: ...


class CommandQueueFull(Exception):
    """The shard's worker holds as many unsent commands as it may: retry later."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"command queue full; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class _BadRequest(Exception):
    """A request body or path the operator must fix; the message is one line."""


log = logging.getLogger(__name__)


class StatusSource(Protocol):
    def status(self) -> dict[str, Any]: ...
    def healthy(self) -> bool: ...
    def ready(self) -> bool: ...
    def request_rolling_restart(self) -> bool: ...


class MetricsSource(Protocol):
    def render(self) -> tuple[bytes, str]: ...


class SinkHealth(Protocol):
    """The --sink's writer as the supervisor sees it (``shardmgr.sinks.monitor``)."""

    @property
    def writing(self) -> bool: ...
    def why_not_writing(self) -> str: ...


class HttpApi:
    def __init__(
        self,
        source: StatusSource,
        metrics: MetricsSource,
        *,
        admin_secret: str | None = None,
        guard: ConnectionGuard | None = None,
        sink: SinkHealth | None = None,
    ) -> None:
        self._source = source
        self._sink = sink
        self._metrics = metrics
        self._secret = admin_secret or None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._previous_handler: Any = None
        self.guard = guard if guard is not None else ConnectionGuard()
        # Anyone who can reach the port can make us refuse them: bound what that logs.
        self._refusals = LogThrottle(log)
        self.address: tuple[str, int] | None = None
        app = web.Application(middlewares=[self._track])
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_get("/livez", self._get_livez)
        app.router.add_get("/healthz", self._get_healthz)
        app.router.add_get("/readyz", self._get_readyz)
        app.router.add_get("/status", self._get_status)
        app.router.add_post("/restart", self._post_restart)
        app.router.add_post("/reshard", self._post_reshard)
        app.router.add_post("/presence", self._post_presence)
        app.router.add_post("/shards/{shard_id}/send", self._post_send)
        app.router.add_post("/dead-letters/replay", self._post_replay)
        self.app = app

    @property
    def url(self) -> str:
        assert self.address is not None
        host, port = self.address
        return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind (port 0 picks a free one) and return the bound address."""
        # The guard's deadline closes idle connections (aiohttp's keep-alive timer does not
        # see half-sent headers). Lingering for an unread body and waiting on handlers at
        # shutdown are bounded too: a client that stops sending must not hold either.
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            lingering_time=1.0,
            shutdown_timeout=BODY_TIMEOUT_S,
        )
        await runner.setup()
        server = runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: self.guard.protocol(server),
                host,
                port,
                reuse_address=True,
                backlog=ACCEPT_BATCH,
            )
            for listening in self._server.sockets:
                # The kernel's queue grows; asyncio's accept batch stays small. (A dup shares
                # the listening socket; asyncio's wrapper has no listen().)
                with socket.socket(fileno=os.dup(listening.fileno())) as sock:
                    sock.listen(BACKLOG)
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"--http {host}:{port}: the port is in use (another shardmgr running? "
                    "pick another with --http HOST:PORT, or 127.0.0.1:0 for any free port)"
                ) from None
            raise UserError(f"--http {host}:{port}: cannot listen: {exc.strerror}") from None
        self._runner = runner
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self.guard.handle_loop_exception(self._previous_handler))
        bound = self._server.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            asyncio.get_running_loop().set_exception_handler(self._previous_handler)
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.guard.close_all()

    @web.middleware
    async def _track(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Inside a handler a connection is busy: not timed out, not evicted."""
        transport = request.transport
        self.guard.request_started(transport)
        try:
            return await handler(request)
        finally:
            self.guard.request_finished(transport)

    async def _get_metrics(self, request: web.Request) -> web.Response:
        # Rendering thousands of per-shard series takes a while; off the event loop, it
        # cannot delay IPC, pings or identify grants (prometheus-client is thread-safe).
        loop = asyncio.get_running_loop()
        body, content_type = await loop.run_in_executor(None, self._metrics.render)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def _get_livez(self, request: web.Request) -> web.Response:
        return web.Response(text="alive\n")

    async def _get_healthz(self, request: web.Request) -> web.Response:
        ok = self._source.healthy()
        return web.Response(status=200 if ok else 503, text="ok\n" if ok else "unhealthy\n")

    async def _get_readyz(self, request: web.Request) -> web.Response:
        if self._source.ready():
            if self._sink is not None and not self._sink.writing:
                why = self._sink.why_not_writing()
                return web.Response(status=503, text=f"not ready: no events written: {why}\n")
            return web.Response(text="ready\n")
        # Optional: the supervisor says why (refused shards and their fix); simpler sources
        # (test doubles, embedders) need not.
        reason = getattr(self._source, "not_ready_reason", None)
        detail = f": {reason()}" if reason is not None else ""
        return web.Response(status=503, text=f"not ready{detail}\n")

    async def _get_status(self, request: web.Request) -> web.Response:
        return web.json_response(self._source.status())

    def _refused(self, request: web.Request, what: str) -> web.Response | None:
        """403 unless the request carries the admin secret (None: allowed)."""
        if self._secret is None:
            return web.json_response(
                {"error": f"{what} over HTTP is disabled: set SHARDMGR_ADMIN_SECRET to enable it"},
                status=403,
            )
        # Header bytes that are not UTF-8 arrive as surrogate escapes: compare them as the
        # bytes they were, so they are a wrong secret, not an encoding error (a 500).
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        expected = f"Bearer {self._secret}".encode()
        if not hmac.compare_digest(given, expected):
            self._refusals.warning(
                "refused a request: bad or missing admin secret",
                path=request.path,
                peer=request.remote,
            )
            return web.json_response({"error": "bad or missing admin secret"}, status=403)
        return None

    async def _post_restart(self, request: web.Request) -> web.Response:
        refused = self._refused(request, "restart")
        if refused is not None:
            return refused
        if not self._source.request_rolling_restart():
            return web.json_response({"error": "a restart is already in progress"}, status=409)
        return web.json_response({"restart": "rolling"}, status=202)

    async def _post_reshard(self, request: web.Request) -> web.Response:
        """202 {"from", "to"}: a reshard started in the background; 200: nothing to do;
        409: one is running; 422: refused (budget, a slice), with the reason."""
        refused = self._refused(request, "reshard")
        if refused is not None:
            return refused
        resharder = getattr(self._source, "reshard", None)
        if resharder is None:
            return web.json_response({"error": "this server cannot reshard"}, status=501)
        answer = await resharder.request(Trigger.OPERATOR)
        return web.json_response(answer.as_dict(), status=answer.answer.value)

    def _commands(self) -> CommandSource | None:
        source = self._source
        if all(hasattr(source, m) for m in ("runs_shard", "send_command", "broadcast_command")):
            return source  # type: ignore[return-value]
        return None

    async def _post_presence(self, request: web.Request) -> web.Response:
        refused = self._refused(request, "presence")
        if refused is not None:
            return refused
        commands = self._commands()
        if commands is None:
            return web.json_response({"error": "this server cannot send commands"}, status=501)
        try:
            presence = await _body(request, _Presence)
            try:
                parse_presence_status(presence.status)
            except ValueError as exc:
                raise _BadRequest(str(exc)) from None
            if any(not a.name for a in presence.activities):
                raise _BadRequest("every activity needs a non-empty name")
            if any(not 0 <= a.type <= 5 for a in presence.activities):
                raise _BadRequest("activity type must be 0 to 5 (playing ... competing)")
            d = msgspec.json.encode(
                {
                    "since": presence.since,
                    "activities": [_activity(a) for a in presence.activities],
                    "status": presence.status,
                    "afk": presence.afk,
                }
            )
            _check_size(Op.PRESENCE_UPDATE, d)
        except _BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)
        sent, planned = await commands.broadcast_command(int(Op.PRESENCE_UPDATE), d)
        log.info("presence sent", extra=fields(status=presence.status, shards=sent))
        status = 202 if sent == planned else 503
        return web.json_response(
            {"presence": presence.status, "shards": sent, "planned": planned}, status=status
        )

    async def _post_send(self, request: web.Request) -> web.Response:
        refused = self._refused(request, "sending commands")
        if refused is not None:
            return refused
        commands = self._commands()
        if commands is None:
            return web.json_response({"error": "this server cannot send commands"}, status=501)
        try:
            raw_id = request.match_info["shard_id"]
            try:
                shard_id = int(raw_id)
            except ValueError:
                raise _BadRequest(f"shard id must be a number, not {raw_id!r}") from None
            if not commands.runs_shard(shard_id):
                raise _BadRequest(f"shard {shard_id} is not run by this supervisor")
            packet = await _body(request, _Packet)
            if packet.op in _SESSION_OPS:
                raise _BadRequest(
                    f"op {packet.op} (identify/resume) is managed by the shard itself"
                )
            if packet.op not in CLIENT_OPS:
                raise _BadRequest(
                    f"op {packet.op} is not a client opcode; use one of "
                    f"{', '.join(map(str, _SENDABLE_OPS))}"
                )
            d = bytes(packet.d)
            _check_size(packet.op, d)
        except _BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)
        try:
            sent = await commands.send_command(shard_id, packet.op, d)
        except CommandQueueFull as exc:
            retry = max(1, math.ceil(exc.retry_after_s))
            return web.json_response(
                {"error": f"shard {shard_id} has too many commands queued; retry in {retry} s"},
                status=429,
                headers={"Retry-After": str(retry)},
            )
        if not sent:
            return web.json_response(
                {"error": f"shard {shard_id}'s worker is not running right now; retry shortly"},
                status=503,
            )
        log.info("command sent", extra=fields(shard=shard_id, op=packet.op))
        return web.json_response({"shard": shard_id, "op": packet.op}, status=202)

    async def _post_replay(self, request: web.Request) -> web.Response:
        """``shardmgr dead-letters replay``: a dead letter to its shard's handler again."""
        refused = self._refused(request, "replaying dead letters")
        if refused is not None:
            return refused
        replay = getattr(self._source, "replay_dead_letter", None)
        if replay is None:
            return web.json_response({"error": "this server keeps no dead letters"}, status=501)
        try:
            body = await _body(request, _Replay)
        except _BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)
        outcome, detail = await replay(body.shard_id, body.seq)
        status = _REPLAY_STATUS[outcome]
        key = "replayed" if outcome is ReplayOutcome.DONE else "error"
        log.info(
            "dead letter replayed",
            extra=fields(shard=body.shard_id, seq=body.seq, outcome=outcome),
        )
        return web.json_response({key: detail, "outcome": outcome.value}, status=status)


async def _body(request: web.Request, kind: type[_T]) -> _T:
    if request.content_length is not None and request.content_length > _MAX_BODY:
        raise _BadRequest(f"request body above {_MAX_BODY} bytes")
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            data = await request.read()
    except TimeoutError:
        raise _BadRequest(f"request body not received within {BODY_TIMEOUT_S:g}s") from None
    if len(data) > _MAX_BODY:
        raise _BadRequest(f"request body above {_MAX_BODY} bytes")
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise _BadRequest(f"bad request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise _BadRequest(f"request body is not valid JSON: {exc}") from None


def _activity(activity: _Activity) -> dict[str, Any]:
    # ``type`` is required on the wire even when it is 0 (playing); unset extras are left out.
    out: dict[str, Any] = {"name": activity.name, "type": activity.type}
    if activity.url is not None:
        out["url"] = activity.url
    if activity.state is not None:
        out["state"] = activity.state
    return out


def _check_size(op: int, d: bytes) -> None:
    size = len(b'{"op":%d,"d":}' % op) + len(d)
    if size > MAX_CLIENT_PAYLOAD:
        raise _BadRequest(f"payload of {size} bytes exceeds the gateway's {MAX_CLIENT_PAYLOAD}")
