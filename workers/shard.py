"""One gateway shard: the connection's state machine and its receive path.

The receive path is ``Shard.feed`` (inflate -> envelope decode -> state machine -> seq
bookkeeping -> handler backlog), socket-free, so benchmarks and tests drive the exact code
a live shard runs. What to do after a close, op 7, op 9, a zombie or bad data is decided by
the pure functions in ``workers.decisions``; ``workers.runner`` carries the decisions out
(connect, read, close, back off). The session lives in ``workers.session``, the outgoing
commands in ``workers.commands``. Every state change is checked against ``TRANSITIONS``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, Final

import aiohttp
import msgspec

from workers import commands, decisions, ipc
from workers.backoff import Backoff
from workers.clock import REAL_CLOCK, Clock
from workers.codec import CodecError, Inflater, make_inflater
from workers.commands import CommandQueue
from workers.decisions import Action, Next
from workers.events import DISPATCH_NAMES, OTHER_EVENT, Event
from workers.handlers import Delivery
from workers.heartbeat import Heartbeater, HeartbeatMonitor
from workers.ipc import ShardState
from workers.permits import IdentifyPermit
from workers.protocol import (
    ENVELOPE_ERRORS,
    MAX_CLIENT_PAYLOAD,
    GuildId,
    Hello,
    Op,
    ReadySession,
    decode_envelope_raw,
    encode,
)
from workers.ratelimit import SendLimiter, heartbeat_reserve
from workers.reporter import Reporter, ShardCounters
from workers.runner import Runner, gateway_url
from workers.session import Session

__all__ = ["TRANSITIONS", "IllegalTransition", "Shard", "ShardState", "gateway_url"]

log = logging.getLogger(__name__)

_decode_hello: Final = msgspec.json.Decoder(Hello).decode
_decode_ready: Final = msgspec.json.Decoder(ReadySession).decode
_decode_bool: Final = msgspec.json.Decoder(bool).decode
_decode_guild_id: Final = msgspec.json.Decoder(GuildId).decode
# A module constant, not a call: the check runs for every dispatch.
_MAX_SEQ_JUMP: Final = decisions.MAX_SEQ_JUMP

_S = ShardState
# Which state may follow which. A connection that ends, in whatever state, reconnects or
# stops; READY is honoured whenever it comes (a socket-free driver feeds it from IDLE).
TRANSITIONS: Final[dict[ShardState, frozenset[ShardState]]] = {
    _S.IDLE: frozenset({_S.CONNECTING, _S.CONNECTED, _S.STOPPED}),
    _S.CONNECTING: frozenset(
        {_S.WAITING_PERMIT, _S.RESUMING, _S.CONNECTED, _S.RECONNECTING, _S.STOPPED}
    ),
    _S.WAITING_PERMIT: frozenset({_S.IDENTIFYING, _S.CONNECTED, _S.RECONNECTING, _S.STOPPED}),
    _S.IDENTIFYING: frozenset({_S.CONNECTED, _S.RECONNECTING, _S.STOPPED}),
    _S.RESUMING: frozenset({_S.CONNECTED, _S.RECONNECTING, _S.STOPPED}),
    _S.CONNECTED: frozenset({_S.RECONNECTING, _S.STOPPED}),
    _S.RECONNECTING: frozenset({_S.CONNECTING, _S.STOPPED}),
    _S.STOPPED: frozenset(),
}

# Tests turn this on so that an illegal transition fails them; in production it is
# logged and counted, and the shard carries on.
STRICT_TRANSITIONS = False


class IllegalTransition(AssertionError):
    """A state change ``TRANSITIONS`` does not allow: a bug in this package."""


class Shard:
    """One shard's connection, reconnected until it is stopped or hits a fatal code."""

    def __init__(
        self,
        shard_id: int,
        config: ipc.WorkerConfig,
        *,
        permits: IdentifyPermit,
        reporter: Reporter,
        delivery: Delivery,
        http: aiohttp.ClientSession | None = None,
        session: ipc.SessionInfo | None = None,
        clock: Clock = REAL_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.config = config
        self.permits = permits
        self.reporter = reporter
        self.delivery = delivery
        self._push: Callable[[Event], None] = delivery.push
        self.counters: ShardCounters = delivery.counters
        self.clock = clock
        self.rng = rng or random.Random()
        self.backoff = Backoff(
            config.backoff_base_s,
            config.backoff_cap_s,
            config.backoff_stable_s,
            clock,
            self.rng,
            config.reconnect_quick_s,
        )
        if not decisions.keeps_session(config.zombie_close_code):
            raise ValueError(
                f"zombie_close_code {config.zombie_close_code} would end the session; "
                "use a code other than 1000/1001 (e.g. 4000)"
            )
        self._check_acks = config.check_heartbeat_acks
        self.identify_payload = commands.identify(config, shard_id)
        # Our Identify closed with 4001/4002 in a row: past two, identifying is hopeless.
        self.identify_rejects = 0
        # An IDENTIFY went out and the gateway has not yet shown it read it.
        self.identify_unseen = False

        self.session = Session(session)
        self.guilds = 0
        self.latency_s: float | None = None
        self.identifies = 0
        self.resumes = 0
        self.illegal_transitions = 0
        # Whether we already warned that the server ignores our sharding (once a shard).
        self.sharding_warned = False
        self._state = ShardState.IDLE
        self.commands = CommandQueue(shard_id)

        # Per-connection state, replaced by ``new_connection``.
        self._inflater: Inflater = make_inflater(config.compress, config.max_message_bytes)
        # Bound once per connection: the receive path calls it for every frame.
        self._inflate = self._inflater.feed
        self.monitor = HeartbeatMonitor(clock, self._check_acks)
        self.limiter = SendLimiter(clock=clock)
        self.heartbeater: Heartbeater | None = None
        # When the handshake (HELLO, then READY/RESUMED) must be done by.
        self.deadline: float | None = None
        self.runner = Runner(self, http)

    # ------------------------------------------------------------------ observation

    @property
    def state(self) -> ShardState:
        return self._state

    @property
    def check_heartbeat_acks(self) -> bool:
        """discordrb's switch: False turns zombie detection off (beats still go out)."""
        return self._check_acks

    @check_heartbeat_acks.setter
    def check_heartbeat_acks(self, value: bool) -> None:
        self._check_acks = value
        self.monitor.check_acks = value

    @property
    def backlog(self) -> int:
        return self.delivery.backlog

    @property
    def has_session(self) -> bool:
        return self.session.resumable

    @property
    def session_id(self) -> str | None:
        return self.session.session_id

    @property
    def resume_url(self) -> str | None:
        return self.session.resume_url

    @property
    def seq(self) -> int:
        return self.session.seq

    @property
    def duplicates(self) -> int:
        return self.session.duplicates

    @property
    def skipped(self) -> int:
        return self.session.skipped

    @property
    def action(self) -> Action | None:
        """What ends the current connection (None: it carries on)."""
        return self.runner.action

    def session_info(self) -> ipc.SessionInfo | None:
        """The session as of the last event *received* (what this process resumes with)."""
        return self.session.info()

    def checkpoint_session(self) -> ipc.SessionInfo | None:
        """The session as of the last event the handler *finished*: what another process
        must resume from so that nothing in flight is lost (at-least-once)."""
        return self.session.checkpoint(self.delivery.checkpoint)

    def set_state(self, state: ShardState) -> None:
        current = self._state
        if state is current:
            return
        if state not in TRANSITIONS[current]:
            self.illegal_transitions += 1
            log.error(
                "illegal shard state transition",
                extra={"shard": self.shard_id, "from": current.value, "to": state.value},
            )
            if STRICT_TRANSITIONS:
                raise IllegalTransition(f"shard state {current.value} -> {state.value}")
        self._state = state
        if log.isEnabledFor(logging.DEBUG):
            log.debug("shard state", extra={"shard": self.shard_id, "state": state.value})
        self.reporter.state_changed(self.shard_id, state)

    # ------------------------------------------------------------------ receive path

    def feed(self, frame: bytes | str) -> None:
        """One websocket message: binary frames go through the connection's inflater,
        text frames are plain JSON (the socket loop calls ``feed_text`` for those directly;
        ``str`` stays accepted for callers such as tests/reliability that drive this API)."""
        if isinstance(frame, str):
            self.feed_text(frame.encode())
            return
        self.monitor.received_since_beat = True
        self.counters.bytes_compressed += len(frame)
        try:
            data = self._inflate(frame)
        except CodecError as exc:
            self.bad_payload(exc.kind, str(exc))
            return
        if data is not None:
            self._message(data)

    def feed_text(self, data: bytes) -> None:
        self.monitor.received_since_beat = True
        self.counters.bytes_compressed += len(data)
        if len(data) > self.config.max_message_bytes:
            self.bad_payload("oversized", f"message above {self.config.max_message_bytes} bytes")
            return
        self._message(data)

    def _message(self, data: bytes) -> None:
        counters = self.counters
        counters.bytes_inflated += len(data)
        try:
            envelope = decode_envelope_raw(data)
        except ENVELOPE_ERRORS as exc:
            detail = "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            self.bad_payload("bad_json", detail)
            return
        op = envelope.op
        if op == 0:  # DISPATCH, as a constant: this branch runs for every event
            name = envelope.t or ""
            seq = envelope.s
            session = self.session
            if seq is not None and seq - session.seq > _MAX_SEQ_JUMP:
                self.bad_payload("bad_seq", f"seq {seq} jumps from {session.seq}")
                return
            if name == "READY" or name == "RESUMED":
                # Before the duplicate check: these end the handshake whatever their seq
                # (a RESUMED may carry the last seq we already have).
                stale = name == "RESUMED" and seq is not None and seq <= session.seq
                if not self._on_session_event(name, envelope.d, None if stale else seq):
                    return
                if stale:
                    seq = None  # delivered, but never moves the checkpoint backwards
            elif seq is not None and seq <= session.seq:
                # Already received in this session (a replay overlapping what we have):
                # delivering it again would be a duplicate.
                session.duplicates += 1
                counters.duplicates += 1
                return
            else:
                if name == "GUILD_CREATE" and not self.sharding_warned:
                    self._check_guild_shard(envelope.d)
                if self.deadline is not None:
                    # A long replay is progress, not a stuck handshake.
                    self.deadline = self.clock.monotonic() + self.config.ready_timeout_s
                if seq is not None:
                    session.seq = seq
            # No per-dispatch log line: the ``log`` handler is there for that, and even a
            # disabled logger's level check costs ~3% of this path (make bench).
            events = counters.events
            count = events.get(name)
            if count is not None:  # a name counted before: documented (or ``other`` itself)
                events[name] = count + 1
            else:
                key = name if name in DISPATCH_NAMES else OTHER_EVENT  # t is from the network
                events[key] = events.get(key, 0) + 1
            self._push(
                Event(self.shard_id, seq, name, envelope.d, session.epoch, session.session_id)
            )
        elif op == Op.HEARTBEAT_ACK:
            latency = self.monitor.on_ack()
            if latency is not None:
                self.latency_s = latency
                counters.latencies_s.append(latency)
        elif op == Op.HELLO:
            self._on_hello(envelope.d)
        elif op == Op.HEARTBEAT:
            self.runner.request_beat()
        elif op == Op.RECONNECT:
            self.end(decisions.decide_reconnect_request(self.has_session))
        elif op == Op.INVALID_SESSION:
            self.identify_seen()
            try:
                resumable = _decode_bool(envelope.d)
            except msgspec.DecodeError:
                resumable = False
            action = decisions.decide_invalid_session(resumable, self.has_session)
            if action.next is Next.IDENTIFY:
                self.session.drop()
            self.end(action)
        else:
            log.debug("ignoring unknown opcode", extra={"shard": self.shard_id, "op": op})

    def bad_payload(self, kind: str, detail: str) -> None:
        """Undecodable or implausible data: counted, and the connection ends keeping the
        session; the same point failing again and again is skipped (``Session``)."""
        if self.session.bad_payload():
            log.error(
                "dropping an event the gateway keeps replaying undecodable",
                extra={"shard": self.shard_id, "seq": self.session.seq + 1, "kind": kind},
            )
        self._refuse(kind, detail)

    def _refuse(self, kind: str, detail: str) -> None:
        self.counters.bad_payloads += 1
        log.warning(
            "bad payload from gateway",
            extra={"shard": self.shard_id, "kind": kind, "detail": detail[:200]},
        )
        self.end(decisions.decide_bad_payload(self.has_session, f"{kind}: {detail}"))

    def _on_hello(self, body: msgspec.Raw) -> None:
        if self.heartbeater is not None or self.runner.action is not None:
            return
        try:
            hello = _decode_hello(body)
        except msgspec.DecodeError as exc:
            self.bad_payload("bad_json", f"hello: {exc}")
            return
        refused = decisions.hello_interval_refused(hello.heartbeat_interval)
        if refused is not None:
            # Not a replayed event: it must never count toward skipping one.
            self._refuse("bad_hello", refused)
            return
        interval_s = hello.heartbeat_interval / 1000.0
        # The 120/60 s budget is per connection: a fresh limiter with room for beats.
        self.limiter = SendLimiter(reserve=heartbeat_reserve(interval_s), clock=self.clock)
        self.deadline = None
        self.heartbeater = Heartbeater(
            interval_s, self.monitor, self.runner.beat, self._on_zombie, self.clock, self.rng
        )
        self.runner.start_handshake(self.heartbeater)

    def _on_session_event(self, name: str, body: msgspec.Raw, seq: int | None) -> bool:
        if name == "READY":
            try:
                ready = _decode_ready(body)
            except msgspec.DecodeError as exc:
                # The seq has not moved: the READY is replayed or identify is retried.
                self.bad_payload("bad_json", f"READY: {exc}")
                return False
            if seq is not None:
                self.session.seq = seq
            self._on_ready(ready)
            return True
        # RESUMED's body is undocumented and unused: never a reason to reject it.
        if seq is not None:
            self.session.seq = seq
        if self._state is ShardState.RESUMING:
            self._connected("resume")
        return True

    def _on_ready(self, ready: ReadySession) -> None:
        requested = [self.shard_id, self.config.num_shards]
        if ready.shard is not None and ready.shard != requested:
            self._warn_sharding(f"READY is for shard {ready.shard}, we asked for {requested}")
        self.identify_seen()
        self.identify_rejects = 0
        self.session.start(ready.session_id, ready.resume_gateway_url)
        self.guilds = len(ready.guilds)
        self._connected("identify")

    def _connected(self, kind: str) -> None:
        self.deadline = None
        self.set_state(ShardState.CONNECTED)
        self.backoff.connected()
        self.runner.connection_ready()
        info = self.session.info()
        if info is not None:
            self.reporter.session_started(self.shard_id, kind, info, self.guilds)
        log.info(
            "shard connected",
            extra={"shard": self.shard_id, "kind": kind, "seq": self.session.seq},
        )

    def route_events(self, push: Callable[[Event], None]) -> None:
        """Where received dispatches go: the delivery (default), or a reshard's holding
        buffer until the switch (``workers.holding``)."""
        self._push = push

    def _check_guild_shard(self, body: msgspec.Raw) -> None:
        """A guild outside this shard's share (Discord's ``(id >> 22) % num_shards``)
        means the server ignores sharding: every shard then gets it, and every event of
        it reaches the handler once per shard."""
        try:
            guild_id = int(_decode_guild_id(body).id)
        except (msgspec.DecodeError, ValueError):
            return  # the handler sees the body as it is; this check has nothing to say
        owner = (guild_id >> 22) % self.config.num_shards
        if owner != self.shard_id:
            self._warn_sharding(f"guild {guild_id} belongs to shard {owner}")

    def _warn_sharding(self, detail: str) -> None:
        if self.sharding_warned:
            return
        self.sharding_warned = True
        log.warning(
            "the gateway does not seem to honour sharding: events may reach the handler "
            "once per shard",
            extra={"shard": self.shard_id, "detail": detail},
        )

    def _on_zombie(self) -> None:
        log.warning(
            "zombie connection: heartbeat not acknowledged and nothing received",
            extra={"shard": self.shard_id},
        )
        self.end(decisions.decide_zombie(self.has_session, self.config.zombie_close_code))

    def identify_seen(self) -> None:
        """Discord times the window from when it reads the IDENTIFY, and a busy gateway (or
        network) reads it late: timing the next one from our send is early by that delay.
        So the window starts only once the gateway has provably read it: its answer (READY
        or op 9) arrived, or the connection is gone. Every later IDENTIFY of the bucket
        then reaches Discord at least one window after it read this one, whatever the
        latency, at the cost of one round trip per window."""
        if self.identify_unseen:
            self.identify_unseen = False
            self.permits.sent(self.shard_id)

    def server_closed(self, code: int | None, reason: str | None) -> None:
        identifying = self._state is ShardState.IDENTIFYING
        action, self.identify_rejects = decisions.decide_server_close(
            code, self.has_session, identifying, self.identify_rejects
        )
        level = logging.ERROR if action.next is Next.STOP else logging.INFO
        log.log(
            level,
            "gateway closed the connection",
            extra={
                "shard": self.shard_id,
                "code": code,
                "reason": reason or "",
                "next": action.next.value,
            },
        )
        if action.next is Next.IDENTIFY:
            self.session.drop()
        self.end(action)

    def end(self, action: Action) -> None:
        """End the current connection for ``action`` (the first reason wins)."""
        self.runner.end(action)

    def new_connection(self) -> None:
        """Fresh per-connection state: nothing measured on the previous socket (latency
        included) says anything about the next one."""
        config = self.config
        self._inflater = make_inflater(config.compress, config.max_message_bytes)
        self._inflate = self._inflater.feed
        self.monitor = HeartbeatMonitor(self.clock, self._check_acks)
        self.heartbeater = None
        self.latency_s = None
        self.deadline = self.clock.monotonic() + config.hello_timeout_s
        self.runner.reset()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Connect, reconnect and resume until stopped or a fatal close (see ``Runner``)."""
        await self.runner.run()

    async def stop(self) -> None:
        """Close with 1000: the session ends and the bot goes offline on this shard."""
        await self.runner.stop()

    async def suspend(self) -> ipc.SessionInfo | None:
        """Close with a session-keeping code and return the session (seq = the checkpoint)
        so that another process can resume it."""
        await self.runner.suspend()
        return self.checkpoint_session()

    def kill(self) -> None:
        """Drop the TCP connection without a close frame and stop (the session stays
        resumable on the gateway, as after a crash)."""
        self.runner.kill()

    async def give_handler_a_turn(self) -> None:
        await self.runner.give_handler_a_turn()

    def inject_error(self, exc: BaseException) -> None:
        self.runner.inject_error(exc)

    def inject_reconnect(self, resume: bool = True) -> None:
        self.runner.inject_reconnect(resume)

    def inject_resume(self, seq: int | None = None) -> None:
        self.runner.inject_resume(seq)

    def set_tap(self, tap: Callable[[Event], None] | None) -> None:
        """Show every dispatch to ``tap`` before its delivery (None: stop). Set only while
        someone waits for a reply event (member chunks), so the hot path pays nothing
        otherwise."""
        push = self.delivery.push
        if tap is None:
            self._push = push
            return

        def tapped(event: Event) -> None:
            tap(event)
            push(event)

        self._push = tapped

    # ------------------------------------------------------------------ commands

    def _check_open(self, data: bytes) -> None:
        if len(data) > MAX_CLIENT_PAYLOAD:
            raise ValueError(f"payload of {len(data)} bytes exceeds {MAX_CLIENT_PAYLOAD}")
        if self.runner.stopping or (self._state is ShardState.STOPPED and self.runner.running):
            raise commands.ShardClosed(f"shard {self.shard_id} is stopped")

    async def send_raw(self, data: bytes) -> None:
        """Queue an encoded payload (waiting for room in the bounded queue); returns once
        it has been written to a ready connection. Commands survive reconnects; they fail
        only if the shard stops for good."""
        self._check_open(data)
        await self.commands.put(data)

    def queue_raw(self, data: bytes) -> asyncio.Future[None]:
        """Queue without waiting: the future of the write, or ``commands.QueueFull``."""
        self._check_open(data)
        return self.commands.put_nowait(data)

    async def send_packet(self, op: int, d: Any) -> None:
        await self.send_raw(encode(op, d))

    async def update_presence(
        self,
        status: str = "online",
        activities: list[dict[str, Any]] | None = None,
        since: int | None = None,
        afk: bool = False,
    ) -> None:
        """Op 3. ``activities``: dicts with ``name``, ``type`` and optional ``url``/``state``."""
        payload = commands.presence_update(status, activities, since, afk)
        await self.send_packet(Op.PRESENCE_UPDATE, payload)

    async def update_voice_state(
        self,
        guild_id: str | int,
        channel_id: str | int | None,
        self_mute: bool = False,
        self_deaf: bool = False,
    ) -> None:
        """Op 4; ``channel_id=None`` leaves the voice channel."""
        payload = commands.voice_state_update(guild_id, channel_id, self_mute, self_deaf)
        await self.send_packet(Op.VOICE_STATE_UPDATE, payload)

    async def request_members(
        self,
        guild_id: str | int,
        query: str | None = None,
        limit: int = 0,
        presences: bool = False,
        user_ids: list[str | int] | str | int | None = None,
        nonce: str | None = None,
    ) -> None:
        """Op 8: exactly one of ``query`` (with ``limit``) or ``user_ids``."""
        payload = commands.request_guild_members(guild_id, query, limit, presences, user_ids, nonce)
        await self.send_packet(Op.REQUEST_GUILD_MEMBERS, payload)
