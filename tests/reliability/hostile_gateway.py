"""A small gateway for tests that misbehaves on purpose: each test gives it a script, run
for every websocket connection, that can send anything (op 1 floods, absurd HELLOs, op 7
right after RESUMED, a seq from far ahead, op 9) or never complete the handshake at all.
Plain JSON (``compress=none``), 127.0.0.1, a free port. Heartbeats are ACKed by the
connection's reader unless the script turns that off."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from tests.doubles import RecordingReporter
from tests.unit.workers.gateway_harness import TOKEN, WAIT_S
from workers import ipc
from workers.handlers import Delivery, Handler
from workers.permits import InProcessPermits
from workers.reporter import ShardCounters
from workers.shard import Shard

Script = Callable[["Conn"], Awaitable[None]]


class Conn:
    """One websocket connection as the script sees it."""

    def __init__(self, gateway: HostileGateway, ws: web.WebSocketResponse, index: int) -> None:
        self.gateway = gateway
        self.ws = ws
        self.index = index
        self.ack = True
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def send(
        self, op: int, d: Any = None, s: int | None = None, t: str | None = None
    ) -> None:
        await self.ws.send_bytes(msgspec.json.encode({"op": op, "d": d, "s": s, "t": t}))

    async def hello(self, interval_ms: int = 41_250) -> None:
        await self.send(10, {"heartbeat_interval": interval_ms})

    async def expect(self, *ops: int) -> dict[str, Any]:
        """The next client payload with one of ``ops`` (heartbeats never reach here)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                msg = await self.received.get()
                if msg["op"] in ops:
                    return msg

    async def handshake(self, interval_ms: int = 41_250) -> str:
        """HELLO, then READY for an IDENTIFY or RESUMED for a RESUME; returns which."""
        gw = self.gateway
        await self.hello(interval_ms)
        msg = await self.expect(2, 6)
        gw.handshakes.append(msg)
        if msg["op"] == 2:
            gw.sessions += 1
            gw.seq = 1
            ready = {
                "v": 10,
                "session_id": f"session-{gw.sessions}",
                "resume_gateway_url": gw.gateway_url,
                "guilds": [],
                "user": {"id": "1", "username": "bot"},
            }
            await self.send(0, ready, gw.seq, "READY")
            return "identify"
        await self.send(0, {}, gw.seq, "RESUMED")
        return "resume"

    async def dispatch(self, s: int | None = None, name: str = "MESSAGE_CREATE") -> None:
        gw = self.gateway
        gw.seq = gw.seq + 1 if s is None else s
        await self.send(0, {"n": gw.seq}, gw.seq, name)


class HostileGateway:
    def __init__(self, script: Script | None = None, *, stall_upgrade: bool = False) -> None:
        self.script = script
        # Accept the TCP connection and the HTTP request, and never answer it.
        self.stall_upgrade = stall_upgrade
        self.attempts = 0
        self.attempted = asyncio.Event()
        self.connections: list[Conn] = []
        self.handshakes: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.sessions = 0
        self.seq = 0
        self.changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._stalled = asyncio.Event()
        self.gateway_url = ""

    async def __aenter__(self) -> HostileGateway:
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        port = sockets[0].getsockname()[1]
        self.gateway_url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stalled.set()
        for conn in self.connections:
            await conn.ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    def _touch(self) -> None:
        self.changed.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        self.attempted.set()
        self._touch()
        if self.stall_upgrade:
            await self._stalled.wait()
            return web.Response(status=503)
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = Conn(self, ws, len(self.connections))
        self.connections.append(conn)
        self._touch()
        reader = asyncio.ensure_future(self._read(conn))
        try:
            if self.script is not None:
                await self.script(conn)
            await conn.closed.wait()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await ws.close()
            self._touch()
        return ws

    async def _read(self, conn: Conn) -> None:
        try:
            async for msg in conn.ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                data = msgspec.json.decode(msg.data)
                if data.get("op") == 1:
                    self.heartbeats += 1
                    if conn.ack:
                        await conn.send(11)
                else:
                    conn.received.put_nowait(data)
                self._touch()
        finally:
            conn.closed.set()
            self._touch()


class Top(random.Random):
    """Picks the top of every backoff range, so a test reads the ceiling it chose."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def _ignore(event: Any) -> None:
    return None


@contextlib.asynccontextmanager
async def shard_against(
    gw: HostileGateway,
    handler: Callable[[Any], Awaitable[None]] = _ignore,
    rng: random.Random | None = None,
    session: ipc.SessionInfo | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[Shard, RecordingReporter]]:
    """One real shard (socket loop, heartbeats, permits) running against ``gw``."""
    settings: dict[str, Any] = {
        "worker_id": 0,
        "token": TOKEN,
        "gateway_url": gw.gateway_url,
        "num_shards": 1,
        "shards": [ipc.ShardAssignment(0)],
        "intents": 1,
        "compress": "none",
        "backoff_base_s": 0.05,
        "backoff_cap_s": 0.5,
        "backoff_stable_s": 5.0,
        "reconnect_quick_s": 0.05,
        "hello_timeout_s": 5.0,
        "ready_timeout_s": 5.0,
        "close_timeout_s": 1.0,
    }
    settings.update(overrides)
    config = ipc.WorkerConfig(**settings)
    reporter = RecordingReporter()
    delivery = Delivery(0, Handler(handler), ShardCounters(), maxsize=1000)
    shard = Shard(
        0,
        config,
        permits=InProcessPermits(window_s=0.01),
        reporter=reporter,
        delivery=delivery,
        session=session,
        rng=rng,
    )
    tasks = [asyncio.ensure_future(delivery.run()), asyncio.ensure_future(shard.run())]
    try:
        yield shard, reporter
    finally:
        await shard.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
