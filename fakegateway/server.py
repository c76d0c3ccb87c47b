"""``FakeGateway``: the fake Discord gateway as one object tests start in-process (or the CLI
runs): REST discovery, the websocket gateway on ``/`` and ``/resume``, the traffic
generator, the session sweeper, chaos, and the ``/_fake`` control API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

from aiohttp import web

from fakegateway import control, fanout, faults, inject, rest, rest_apps, rest_channels
from fakegateway.config import FakeConfig, bot_id_from_token
from fakegateway.control import CONTROL_KEY
from fakegateway.gateway import handle_gateway
from fakegateway.state import REST_FAULT_STATUSES, STATE_KEY, FakeState, RestFault
from workers.clock import REAL_CLOCK, Clock
from workers.logsetup import fields

log = logging.getLogger("fakegateway")

TRAFFIC_TICK_S: Final = 0.05
RESUME_PATH: Final = "/resume"


class FakeGateway:
    """``async with FakeGateway(FakeConfig(...)) as fg:`` then point a client at
    ``fg.api_base`` / ``fg.gateway_url``; inspect ``fg.sessions()`` / ``fg.stats()`` and
    wait with ``await fg.wait_for(lambda g: ..., timeout)``."""

    def __init__(self, config: FakeConfig | None = None, *, clock: Clock = REAL_CLOCK) -> None:
        self.config = config or FakeConfig()
        self._clock = clock
        self._state = FakeState(self.config, clock)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._chaos: faults.Chaos | None = None
        self._port = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeGateway already started")
        cfg = self.config
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((cfg.host, cfg.port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        state = self._state
        state.base_url = f"http://{cfg.host}:{self._port}"
        state.gateway_url = f"ws://{cfg.host}:{self._port}"
        # A different path, so a client that resumes on the generic URL is noticed.
        state.resume_url = f"ws://{cfg.host}:{self._port}{RESUME_PATH}"

        app = web.Application(middlewares=[rest.rest_middleware])
        app[STATE_KEY] = state
        app[CONTROL_KEY] = self
        app.router.add_get("/", handle_gateway)
        app.router.add_get(RESUME_PATH, handle_gateway)
        app.router.add_get(RESUME_PATH + "/", handle_gateway)
        rest.add_routes(app)
        rest_channels.add_routes(app)
        rest_apps.add_routes(app)
        control.add_routes(app)
        rest.add_catch_all(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._runner = runner
        self._tasks = [
            asyncio.ensure_future(self._traffic_loop()),
            asyncio.ensure_future(self._sweep_loop()),
        ]
        if cfg.chaos_seed is not None:
            await self.set_chaos(cfg.chaos_seed, cfg.chaos_interval_s)
        log.info(
            "fake gateway listening",
            extra=fields(url=self.base_url, shards=cfg.shards, guilds=cfg.guild_count),
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._chaos is not None:
            await self._chaos.stop()
            self._chaos = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        conns = list(self._state.connections.values())
        for conn in conns:
            conn.close(1001, b"Fake gateway shutting down.")
        if conns:
            with contextlib.suppress(TimeoutError):
                await self.wait_for(lambda g: not g.state.connections, 2.0)
            for conn in list(self._state.connections.values()):
                conn.cut()
        await runner.cleanup()

    async def __aenter__(self) -> FakeGateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ addresses

    @property
    def state(self) -> FakeState:
        return self._state

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``"""
        return self._state.base_url

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT/api/v10``"""
        return self._state.base_url + "/api/v10"

    @property
    def gateway_url(self) -> str:
        """The ``url`` of ``/gateway/bot``: ``ws://127.0.0.1:PORT``."""
        return self._state.gateway_url

    @property
    def resume_gateway_url(self) -> str:
        """The ``resume_gateway_url`` READY carries: ``ws://127.0.0.1:PORT/resume``."""
        return self._state.resume_url

    # ------------------------------------------------------------------ ground truth

    def sessions(self) -> list[dict[str, Any]]:
        """Exactly the JSON of ``GET /_fake/sessions``: every session since start."""
        return self._state.sessions_json()

    def stats(self) -> dict[str, Any]:
        """Exactly the JSON of ``GET /_fake/stats``."""
        return self._state.stats_json()

    def identify_log(self) -> list[dict[str, Any]]:
        return list(self._state.identify_log)

    def fault_log(self) -> list[dict[str, Any]]:
        return list(self._state.fault_log)

    def active_sessions(self) -> dict[int, dict[str, Any]]:
        """shard id -> the JSON of its active session (the newest if several)."""
        out: dict[int, dict[str, Any]] = {}
        for s in self._state.sessions.all:
            if s.state == "active":
                out[s.shard_id] = s.to_json()
        return out

    def config_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self.config)
        data["token"] = None if self.config.token is None else "[set]"
        data["guilds"] = self.config.guild_count
        data["port"] = self._port
        return data

    def chaos_json(self) -> dict[str, Any] | None:
        return self._chaos.describe() if self._chaos is not None else None

    async def wait_for(
        self,
        predicate: Callable[[FakeGateway], bool],
        # The shared contract is wait_for(predicate, timeout); asyncio.timeout() at every
        # call site would read worse in the many tests that use it.
        timeout: float,  # noqa: ASYNC109
        what: str | None = None,
    ) -> None:
        """Return as soon as ``predicate(self)`` holds, re-checking on every state change
        (connect, identify, resume, disconnect, each traffic batch); raise TimeoutError
        with the current counters otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            left = deadline - loop.time()
            if left <= 0:
                st = self._state.stats_json()
                keys = (
                    "identifies",
                    "identify_violations",
                    "resumes",
                    "connections_open",
                    "sessions_active",
                    "dispatches_sent",
                )
                summary = ", ".join(f"{k}={st[k]}" for k in keys)
                name = what or getattr(predicate, "__name__", "condition")
                raise TimeoutError(f"fake gateway: {name} not true after {timeout}s ({summary})")
            with contextlib.suppress(TimeoutError):
                await self._state.wait_changed(left)

    # ------------------------------------------------------------------ control

    async def inject(self, kind: str, shard_id: int | None = None, **params: Any) -> list[int]:
        """Inject a fault (see ``faults.FAULT_KINDS``) into ``shard_id``'s connection(s), or
        every connected shard when None; returns the shard ids hit. Raises FaultError."""
        params.pop("source", None)
        params.pop("pick", None)
        return faults.inject(self._state, kind, shard_id, source="api", **params)

    def set_event_rate(self, rate: float) -> None:
        """Live dispatches per second per connected shard."""
        if rate < 0:
            raise ValueError("event rate must not be negative")
        self._state.event_rate = rate
        self._state.changed()

    def add_rest_fault(
        self,
        status: int,
        count: int = 1,
        retry_after: float = 1.0,
        is_global: bool = False,
        path: str | None = None,
    ) -> None:
        """The next ``count`` REST calls (matching ``path`` suffix, if given) get ``status``."""
        if status not in REST_FAULT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(map(str, REST_FAULT_STATUSES))}")
        self._state.rest_faults.append(RestFault(status, count, retry_after, is_global, path))

    async def set_chaos(
        self,
        seed: int | None,
        interval_s: float | None = None,
        weights: dict[str, int] | None = None,
    ) -> None:
        """Start (or restart) seeded chaos; ``seed=None`` stops it."""
        if self._chaos is not None:
            await self._chaos.stop()
            self._chaos = None
        if seed is not None:
            chaos = faults.Chaos(
                self._state, seed, interval_s or self.config.chaos_interval_s, weights
            )
            chaos.start()
            self._chaos = chaos

    def set_recommendation(
        self, shards: int, max_guilds_per_shard: int | None = None
    ) -> dict[str, int]:
        """What ``/gateway/bot`` recommends from now on, and optionally the guild count per
        shard above which an Identify is closed with 4011; returns both (the twin of
        ``POST /_fake/recommend``)."""
        if shards < 1:
            raise ValueError("shards must be at least 1")
        if max_guilds_per_shard is not None and max_guilds_per_shard < 1:
            raise ValueError("max_guilds_per_shard must be at least 1")
        state = self._state
        state.recommended_shards = shards
        if max_guilds_per_shard is not None:
            state.max_guilds_per_shard = max_guilds_per_shard
        state.changed()
        return {"shards": shards, "max_guilds_per_shard": state.max_guilds_per_shard}

    def set_budget(self, remaining: int | None = None, total: int | None = None) -> None:
        self._state.budget.set(remaining, total)
        self._state.changed()

    def set_token(self, token: str | None) -> None:
        """Accept ``token`` from now on (None: any well-formed token); clears a token reset."""
        if token is not None and bot_id_from_token(token) is None:
            raise ValueError("token must have Discord's three-part shape")
        self._state.accepted_token = token
        self._state.token_reset = False
        self._state.changed()

    # ------------------------------------------------------------------ REST world

    def rest_stats(self) -> dict[str, Any]:
        """Exactly the JSON of ``GET /_fake/rest``."""
        return self._state.rest.to_json()

    def messages(self, channel_id: int | str | None = None) -> list[dict[str, Any]]:
        """Exactly the JSON of ``GET /_fake/messages[?channel_id=ID]``: in order."""
        return self._state.messages.in_channel(None if channel_id is None else int(channel_id))

    def interactions(self) -> list[dict[str, Any]]:
        """Exactly the JSON of ``GET /_fake/interactions``."""
        return [i.to_json() for i in self._state.interactions.by_id.values()]

    def dispatch(self, t: str, **fields: Any) -> dict[str, Any]:
        """The in-process twin of ``POST /_fake/dispatch``: ``dispatch("MESSAGE_CREATE",
        content="!ping")``. Raises ``InjectError`` for a request the world cannot serve."""
        return inject.dispatch(self._state, self._state.rng, {"t": t, **fields})

    # ------------------------------------------------------------------ background

    async def _traffic_loop(self) -> None:
        state = self._state
        clock = self._clock
        last = clock.monotonic()
        while True:
            await clock.sleep(TRAFFIC_TICK_S)
            now = clock.monotonic()
            # After a long event-loop stall, do not flood everything at once.
            dt = min(now - last, 1.0)
            last = now
            rate = state.event_rate
            if rate <= 0:
                continue
            # Sessions of two shard counts (a reshard in progress) share guilds: each
            # guild event then goes to every session owning the guild, as on Discord.
            overlap = fanout.Overlap.of(state)
            sent = 0
            for conn in state.active_connections():
                session = conn.session
                traffic = session.traffic if session is not None else None
                if session is None or traffic is None or traffic.empty:
                    continue
                conn.traffic_credit += rate * dt
                n = int(conn.traffic_credit)
                if n:
                    conn.traffic_credit -= n
                    sent += n
                    for _ in range(n):
                        event, body, guild_id = traffic.next_event()
                        conn.dispatch(event, body)
                        if overlap is not None:
                            overlap.copy(state, session, event, body, guild_id)
            if sent:
                state.changed()

    async def _sweep_loop(self) -> None:
        state = self._state
        period = max(0.05, min(1.0, self.config.session_ttl_s / 4))
        while True:
            await self._clock.sleep(period)
            if state.sessions.sweep():
                state.changed()
