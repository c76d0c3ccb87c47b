"""Everything the fake gateway's parts share: settings, the world, sessions, identify
buckets, budget, token state, counters, live connections and the change signal that
``FakeGateway.wait_for`` sleeps on."""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import random
import time
from collections.abc import Iterator
from typing import Any, Final, Protocol

from aiohttp import web

from fakegateway.config import FakeConfig, bot_id_from_token
from fakegateway.ratelimit import RateLimits, RestCounters
from fakegateway.sessions import Budget, IdentifyBuckets, Session, SessionStore
from fakegateway.store import CommandStore, InteractionStore, MessageStore
from fakegateway.traffic import EventPool
from fakegateway.world import DISCORD_EPOCH_MS, FakeUser, SnowflakeSource, World
from workers.clock import Clock

log = logging.getLogger("fakegateway")


class Connection(Protocol):
    """What the shared state, the server's loops and the REST side need of one gateway
    socket. ``gateway.Connection`` implements it; naming it here keeps the import graph
    one-way (gateway imports state, never the reverse)."""

    session: Session | None
    closing: bool
    traffic_credit: float

    def close(self, code: int, reason: bytes = b"") -> None: ...

    def cut(self) -> None: ...

    def dispatch(self, event: str, body: bytes) -> int: ...


# What an injected REST fault may answer: a 429, Discord's JSON errors, or the edge's 5xx.
REST_FAULT_STATUSES: Final = (401, 403, 404, 429, 500, 502, 503)


class RestFault:
    """``count`` more REST answers of ``status`` (429 with ``retry_after``, or 5xx)."""

    __slots__ = ("count", "is_global", "path", "retry_after", "status")

    def __init__(
        self, status: int, count: int, retry_after: float, is_global: bool, path: str | None
    ) -> None:
        self.status = status
        self.count = count
        self.retry_after = retry_after
        self.is_global = is_global
        self.path = path

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "count": self.count,
            "retry_after": self.retry_after,
            "global": self.is_global,
            "path": self.path,
        }


class Stats:
    """Counters behind ``/_fake/stats``."""

    def __init__(self) -> None:
        self.identifies = 0
        self.identify_attempts = 0
        self.identify_violations = 0
        self.resumes = 0
        self.resume_failures = 0
        self.resumes_wrong_url = 0
        self.connections_total = 0
        self.dispatches_sent = 0
        self.dispatches_generated = 0
        self.heartbeats = 0
        self.heartbeat_acks = 0
        self.heartbeat_timeouts = 0
        self.payloads_received = 0
        self.token_resets = 0
        self.rest_requests = 0
        self.rest_faults_served = 0
        self.rest_unauthorized = 0
        self.closes_by_code: collections.Counter[str] = collections.Counter()
        self.client_closes_by_code: collections.Counter[str] = collections.Counter()
        self.faults_injected: collections.Counter[str] = collections.Counter()
        # client requests (op 3/4/8/31/43) accepted, by opcode, and each shard's last
        # presence status: what a bot's commands actually reached the gateway as
        self.requests_by_op: collections.Counter[str] = collections.Counter()
        self.presence_by_shard: dict[str, str] = {}


class FakeState:
    def __init__(self, config: FakeConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.started_mono = clock.monotonic()
        self.started_wall = time.time()
        self.world = World(config.seed, config.guild_count, config.unavailable_fraction)
        self.pool = EventPool(self.world, config.seed)
        self.ids = SnowflakeSource(int(time.time() * 1000) - DISCORD_EPOCH_MS)
        self.sessions = SessionStore(clock, config.session_ttl_s)
        self.buckets = IdentifyBuckets(clock, config.max_concurrency, config.identify_window_s)
        self.budget = Budget(
            clock, config.session_start_total, config.start_remaining, config.reset_after_s
        )
        self.stats = Stats()
        self.event_rate = config.event_rate
        # What /gateway/bot recommends and the 4011 threshold: a test raises or lowers them
        # at run time (POST /_fake/recommend) to make a bot reshard.
        self.recommended_shards = config.shards
        self.max_guilds_per_shard = config.max_guilds_per_shard
        self.accepted_token: str | None = config.token
        self.token_reset = False
        self.hello_reconnects = 0
        self.member_requests: dict[int, float] = {}
        self.rest_faults: collections.deque[RestFault] = collections.deque()
        self.rate_limits = RateLimits(
            clock, config.rest_global_limit, config.rest_message_bucket, config.rest_route_bucket
        )
        self.rest = RestCounters()
        self.messages = MessageStore()
        self.interactions = InteractionStore()
        self.commands = CommandStore()
        # Picks authors, guilds and channels for injected events, reproducibly per seed.
        self.rng = random.Random(f"inject-{config.seed}")
        self.connections: dict[int, Connection] = {}
        self.identify_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=10000)
        self.fault_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=10000)
        self._bots: dict[int, FakeUser] = {}
        self._changed = asyncio.Event()
        self._next_conn_id = 0
        self.base_url = ""
        self.gateway_url = ""
        self.resume_url = ""

    # ------------------------------------------------------------------ change signal

    def changed(self) -> None:
        """Wake every ``wait_for``; cheap enough to call on every state change."""
        self._changed.set()

    async def wait_changed(self, timeout: float) -> None:  # noqa: ASYNC109
        event = self._changed
        if event.is_set():
            # A fresh event for the next round; waiters of the old one have been woken.
            self._changed = asyncio.Event()
            event = self._changed
        await asyncio.wait_for(event.wait(), timeout)

    def new_connection_id(self) -> int:
        self._next_conn_id += 1
        return self._next_conn_id

    # ------------------------------------------------------------------ identity

    def bot_user(self, bot_id: int) -> FakeUser:
        user = self._bots.get(bot_id)
        if user is None:
            name = self.config.bot_name
            user = FakeUser(bot_id, name, name, f"{(bot_id * 2654435761) % (1 << 128):032x}")
            self._bots[bot_id] = user
        return user

    def authenticate(self, token: str) -> FakeUser | None:
        """The bot a bare token belongs to, or None (bad, malformed or reset token)."""
        if self.token_reset:
            return None
        bot_id = bot_id_from_token(token)
        if bot_id is None:
            return None
        if self.accepted_token is not None:
            if not hmac.compare_digest(token.encode(), self.accepted_token.encode()):
                return None
            return self.bot_user(self.config.configured_bot_id)
        return self.bot_user(bot_id)

    def authenticate_header(self, header: str | None) -> FakeUser | None:
        if not header or not header.startswith("Bot "):
            return None
        return self.authenticate(header[4:].strip())

    # ------------------------------------------------------------------ views

    def active_connections(self) -> Iterator[Connection]:
        for conn in list(self.connections.values()):
            if conn.session is not None and not conn.closing:
                yield conn

    def sessions_json(self) -> list[dict[str, Any]]:
        self.sessions.sweep()
        return [s.to_json() for s in self.sessions.all]

    def stats_json(self) -> dict[str, Any]:
        st = self.stats
        sessions = self.sessions.all
        return {
            "identifies": st.identifies,
            "identify_attempts": st.identify_attempts,
            "identify_violations": st.identify_violations,
            "resumes": st.resumes,
            "resume_failures": st.resume_failures,
            "resumes_wrong_url": st.resumes_wrong_url,
            "connections_open": len(self.connections),
            "connections_total": st.connections_total,
            "sessions_active": sum(1 for s in sessions if s.state == "active"),
            "sessions_disconnected": sum(1 for s in sessions if s.state == "disconnected"),
            "sessions_ended": sum(1 for s in sessions if s.state == "ended"),
            "dispatches_sent": st.dispatches_sent,
            "dispatches_generated": st.dispatches_generated,
            "heartbeats": st.heartbeats,
            "heartbeat_acks": st.heartbeat_acks,
            "heartbeat_timeouts": st.heartbeat_timeouts,
            "payloads_received": st.payloads_received,
            "closes_by_code": dict(st.closes_by_code),
            "client_closes_by_code": dict(st.client_closes_by_code),
            "faults_injected": dict(st.faults_injected),
            "requests_by_op": dict(st.requests_by_op),
            "presence_by_shard": dict(st.presence_by_shard),
            "session_start_remaining": self.budget.snapshot()["remaining"],
            "session_start_total": self.budget.total,
            "token_reset": self.token_reset,
            "token_resets": st.token_resets,
            "event_rate": self.event_rate,
            "rest_requests": st.rest_requests,
            "rest_faults_served": st.rest_faults_served,
            "rest_unauthorized": st.rest_unauthorized,
        }

    def session_of(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def uptime(self) -> float:
        return self.clock.monotonic() - self.started_mono

    def epoch(self, after_s: float = 0.0) -> float:
        """Epoch seconds ``after_s`` from now, on the injected clock (rate-limit resets)."""
        return self.started_wall + self.uptime() + after_s

    @property
    def bot(self) -> FakeUser:
        """The bot the configured token (or bot id) belongs to."""
        return self.bot_user(self.config.configured_bot_id)


STATE_KEY: web.AppKey[FakeState] = web.AppKey("fake_state", FakeState)
