"""Fault injection: the fault kinds, how each is carried out on a connection, and the seeded
chaos schedule that injects them at random."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

from fakegateway.gateway import HEARTBEAT_REQUEST, INVALID_SESSION, RECONNECT, Connection
from fakegateway.state import FakeState
from fakegateway.store import message_object
from workers.logsetup import fields

log = logging.getLogger("fakegateway.faults")
_encoder: Final = msgspec.json.Encoder()

FAULT_KINDS: Final = (
    "zombie",
    "reconnect",
    "invalid_session",
    "close",
    "cut",
    "stall",
    "bad_json",
    "bad_compression",
    "oversized",
    "no_suffix",
    "hello_reconnect",
    "heartbeat_request",
)

# Chaos picks these by weight: what the real gateway does to a healthy client. All but the
# last leave the session resumable.
CHAOS_WEIGHTS: Final[dict[str, int]] = {
    "reconnect": 20,
    "zombie": 12,
    "cut": 15,
    "close": 12,
    "invalid_session_resumable": 8,
    "stall": 8,
    "heartbeat_request": 8,
    "invalid_session_not_resumable": 3,
}
# Only when given a weight: corrupt data never comes from Discord itself (mainstream
# libraries crash on it); op 7 in place of Hello (a draining node) is rare; 4008 and 4002
# answer the client's own mistakes (sending too fast, bad payloads), not the server's mood.
OPT_IN_CHAOS: Final = frozenset(
    {"bad_json", "bad_compression", "hello_reconnect", "close_4008", "close_4002"}
)
CHAOS_KINDS: Final = frozenset(CHAOS_WEIGHTS) | OPT_IN_CHAOS
CHAOS_CLOSE_CODES: Final = (4000, 4000, 1001, 1011)


class FaultError(ValueError):
    """A fault request that cannot be carried out (unknown kind, bad parameter)."""


def _int_param(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FaultError(f"{name} must be an integer in {low}..{high}")
    return value


def validate(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check a fault request before anything happens; returns the normalised params."""
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    out: dict[str, Any] = {}
    if kind == "invalid_session":
        resumable = params.get("resumable", False)
        if not isinstance(resumable, bool):
            raise FaultError("resumable must be true or false")
        out["resumable"] = resumable
    elif kind == "close":
        out["code"] = _int_param(params, "code", 4000, 1000, 4999)
    elif kind == "oversized":
        out["bytes"] = _int_param(params, "bytes", 8 << 20, 1, 256 << 20)
    elif kind == "no_suffix":
        out["bytes"] = _int_param(params, "bytes", 1 << 20, 1, 256 << 20)
    elif kind == "hello_reconnect":
        out["count"] = _int_param(params, "count", 1, 1, 1_000_000)
    return out


def targets(
    state: FakeState, shard_id: int | None, session_id: str | None = None
) -> list[Connection]:
    # Every live connection is a gateway.Connection; the state only knows their Protocol.
    conns = sorted(
        (c for c in state.active_connections() if isinstance(c, Connection)), key=lambda c: c.id
    )
    if session_id is not None:
        return [c for c in conns if c.session is not None and c.session.session_id == session_id]
    if shard_id is None:
        return conns
    return [c for c in conns if c.session is not None and c.session.shard_id == shard_id]


def apply(state: FakeState, conn: Connection, kind: str, params: dict[str, Any]) -> None:
    """Carry out one fault on one connection."""
    session = conn.session
    if kind == "zombie":
        conn.zombie = True
    elif kind == "reconnect":
        conn.send(RECONNECT)
        conn.schedule_close(state.config.reconnect_close_after_s, 1001)
    elif kind == "invalid_session":
        resumable: bool = params["resumable"]
        conn.send(INVALID_SESSION[resumable])
        if session is not None:
            if resumable:
                state.sessions.disconnected(session)
            else:
                session.end("op9", by_server=True)
        conn.session = None
    elif kind == "close":
        conn.close(params["code"], b"Fault injected.")
    elif kind == "cut":
        conn.cut()
    elif kind == "stall":
        conn.stalled = True
    elif kind == "bad_json":
        conn.send(b'{"t":"MESSAGE_CREATE","s":,"op":0,"d":{"id":"1", "content": "unterminated')
    elif kind == "bad_compression":
        assert conn.encoder is not None
        conn.send_frames(conn.encoder.corrupt())
    elif kind == "oversized":
        conn.dispatch("MESSAGE_CREATE", _oversized_body(state, conn, params["bytes"]))
    elif kind == "no_suffix":
        assert conn.encoder is not None
        conn.send_frames(conn.encoder.endless(params["bytes"]))
        conn.stalled_after_queue()
    elif kind == "heartbeat_request":
        conn.send(HEARTBEAT_REQUEST)
    state.changed()


def _oversized_body(state: FakeState, conn: Connection, size: int) -> bytes:
    session = conn.session
    assert session is not None
    guilds = [
        g for g in state.world.guilds_for(session.shard_id, session.num_shards) if not g.unavailable
    ]
    if guilds:
        guild_id: int | None = guilds[0].id
        channel = guilds[0].text_channels[0]
    else:
        guild_id, channel = None, state.world.dm_channels[0]
    body = message_object(
        message_id=state.ids.next(),
        channel_id=channel,
        guild_id=guild_id,
        author=session.bot.payload(),
        content="x" * size,
    )
    return _encoder.encode(body)


def inject(
    state: FakeState,
    kind: str,
    shard_id: int | None = None,
    *,
    source: str = "api",
    pick: Callable[[list[Connection]], list[Connection]] | None = None,
    **raw_params: Any,
) -> list[int]:
    """Inject ``kind`` into every connected shard (``shard_id`` None) or the shard's
    connections; returns the shard ids hit. ``hello_reconnect`` applies to the next new
    connections instead. Raises ``FaultError`` for a bad request."""
    session_id = raw_params.pop("session_id", None)
    params = validate(kind, raw_params)
    entry: dict[str, Any] = {"at": time.time(), "kind": kind, "source": source, **params}
    if kind == "hello_reconnect":
        state.hello_reconnects += params["count"]
        state.stats.faults_injected[kind] += params["count"]
        entry["shard_id"] = None
        state.fault_log.append(entry)
        state.changed()
        return []
    chosen = targets(state, shard_id, session_id)
    if pick is not None:
        chosen = pick(chosen)
    hit: list[int] = []
    for conn in chosen:
        session = conn.session
        if session is None:
            continue
        hit.append(session.shard_id)
        state.fault_log.append(
            entry
            | {
                "shard_id": session.shard_id,
                "session_id": session.session_id,
                "seq": session.seq,
            }
        )
        state.stats.faults_injected[kind] += 1
        apply(state, conn, kind, params)
    if hit:
        log.info("fault injected", extra=fields(kind=kind, shards=hit, source=source))
    return hit


class Chaos:
    """Injects a random fault into a random connected shard every ``interval_s`` (±50%),
    from a seeded RNG so a failing run can be replayed."""

    def __init__(
        self, state: FakeState, seed: int, interval_s: float, weights: dict[str, int] | None = None
    ) -> None:
        self.state = state
        self.seed = seed
        self.interval_s = interval_s
        self.weights = dict(weights or CHAOS_WEIGHTS)
        unknown = set(self.weights) - CHAOS_KINDS
        if unknown:
            raise FaultError(f"unknown chaos kinds: {', '.join(sorted(unknown))}")
        if not any(w > 0 for w in self.weights.values()):
            raise FaultError("chaos needs at least one kind with a positive weight")
        self._rng = random.Random(seed)
        self._task: asyncio.Task[None] | None = None
        self.injected = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def describe(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "interval_s": self.interval_s,
            "weights": self.weights,
            "injected": self.injected,
        }

    async def _run(self) -> None:
        rng = self._rng
        names = sorted(self.weights)
        weights = [self.weights[n] for n in names]
        while True:
            await self.state.clock.sleep(self.interval_s * (0.5 + rng.random()))
            choice = rng.choices(names, weights)[0]
            try:
                self.step(choice, rng)
            except Exception:
                log.exception("chaos step failed", extra=fields(kind=choice))

    def step(self, choice: str, rng: random.Random) -> list[int]:
        """One chaos injection of the named choice into one random connected shard."""
        params: dict[str, Any] = {}
        kind = choice
        if choice.startswith("invalid_session"):
            kind = "invalid_session"
            params["resumable"] = choice == "invalid_session_resumable"
        elif choice == "close":
            params["code"] = rng.choice(CHAOS_CLOSE_CODES)
        elif choice.startswith("close_"):
            kind = "close"
            params["code"] = int(choice.removeprefix("close_"))

        def one(conns: list[Connection]) -> list[Connection]:
            return [rng.choice(conns)] if conns else []

        hit = inject(self.state, kind, None, source="chaos", pick=one, **params)
        if hit or kind == "hello_reconnect":
            self.injected += 1
        return hit
