"""The supervisor's HTTP port: /metrics, /livez, /healthz, /readyz, /status, POST /restart.

/livez answers whenever the supervisor's event loop does (a liveness probe for the
supervisor process); /healthz (every worker up) and /readyz (every shard connected) are
about the bot, and fail during ordinary worker restarts."""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
from typing import Any, Protocol

from aiohttp import web

from shardmgr.errors import UserError
from workers.logsetup import fields

log = logging.getLogger(__name__)


class StatusSource(Protocol):
    def status(self) -> dict[str, Any]: ...
    def healthy(self) -> bool: ...
    def ready(self) -> bool: ...
    def request_rolling_restart(self) -> bool: ...


class MetricsSource(Protocol):
    def render(self) -> tuple[bytes, str]: ...


class HttpApi:
    def __init__(
        self,
        source: StatusSource,
        metrics: MetricsSource,
        *,
        admin_secret: str | None = None,
    ) -> None:
        self._source = source
        self._metrics = metrics
        self._secret = admin_secret or None
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None
        app = web.Application()
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_get("/livez", self._get_livez)
        app.router.add_get("/healthz", self._get_healthz)
        app.router.add_get("/readyz", self._get_readyz)
        app.router.add_get("/status", self._get_status)
        app.router.add_post("/restart", self._post_restart)
        self.app = app

    @property
    def url(self) -> str:
        assert self.address is not None
        host, port = self.address
        return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind (port 0 picks a free one) and return the bound address."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"--http {host}:{port}: the port is in use (another shardmgr running? "
                    "pick another with --http HOST:PORT, or 127.0.0.1:0 for any free port)"
                ) from None
            raise UserError(f"--http {host}:{port}: cannot listen: {exc.strerror}") from None
        self._runner = runner
        bound = runner.addresses[0] if runner.addresses else (host, port)
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

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
        ok = self._source.ready()
        return web.Response(status=200 if ok else 503, text="ready\n" if ok else "not ready\n")

    async def _get_status(self, request: web.Request) -> web.Response:
        return web.json_response(self._source.status())

    async def _post_restart(self, request: web.Request) -> web.Response:
        if self._secret is None:
            return web.json_response(
                {"error": "restart over HTTP is disabled: set SHARDMGR_ADMIN_SECRET to enable it"},
                status=403,
            )
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {self._secret}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            log.warning("refused POST /restart: bad or missing admin secret",
                        extra=fields(peer=request.remote))
            return web.json_response({"error": "bad or missing admin secret"}, status=403)
        if not self._source.request_rolling_restart():
            return web.json_response({"error": "a restart is already in progress"}, status=409)
        return web.json_response({"restart": "rolling"}, status=202)
