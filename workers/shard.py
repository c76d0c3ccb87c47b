"""One gateway shard: the connection state machine and its I/O.

The receive path is ``Shard.feed`` (inflate -> envelope decode -> state machine -> seq
bookkeeping -> handler backlog); the socket loop merely calls it, so benchmarks can drive
the exact code a live shard runs. What to do after a close, op 7, op 9, a zombie or bad
data is decided by the pure functions in ``workers.decisions``; this module carries the
decisions out: close with the chosen code, back off, resume or identify.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import sys
from collections import deque
from typing import Any, Final, Literal

import aiohttp
import msgspec
from yarl import URL

from workers import decisions, ipc
from workers.backoff import Backoff
from workers.clock import REAL_CLOCK, Clock
from workers.codec import CodecError, Inflater, make_inflater, query_value
from workers.decisions import Action, Next, Reason
from workers.events import Event
from workers.handlers import Delivery
from workers.heartbeat import Heartbeater, HeartbeatMonitor
from workers.permits import IdentifyPermit, PermitRefused
from workers.protocol import (
    API_VERSION,
    ENVELOPE_ERRORS,
    MAX_CLIENT_PAYLOAD,
    RESUMABLE_CLIENT_CLOSE,
    CloseCode,
    Hello,
    Identify,
    IdentifyProperties,
    Op,
    PresenceUpdate,
    ReadySession,
    RequestGuildMembers,
    Resume,
    VoiceStateUpdate,
    decode_envelope_raw,
    encode,
)
from workers.ratelimit import SendLimiter, heartbeat_reserve
from workers.reporter import Reporter, ShardCounters

log = logging.getLogger(__name__)

_TEXT: Final = aiohttp.WSMsgType.TEXT
_BINARY: Final = aiohttp.WSMsgType.BINARY
_CLOSE: Final = aiohttp.WSMsgType.CLOSE
_decode_hello: Final = msgspec.json.Decoder(Hello).decode
_decode_ready: Final = msgspec.json.Decoder(ReadySession).decode
_decode_bool: Final = msgspec.json.Decoder(bool).decode
# Text frames arrive as bytes (``decode_text=False``): msgspec decodes bytes directly.
_WebSocket = aiohttp.ClientWebSocketResponse[Literal[False]]
_RESUME_URL_ATTEMPTS: Final = 3
# Bad payloads at the same (session, seq) before the event there is skipped. More than
# two, so that two unrelated faults in a row (a cut, then corrupt data) never lose an event.
_SKIP_AFTER_FAILURES: Final = 3
_IDENTIFY_REJECTED: Final = (int(CloseCode.UNKNOWN_OPCODE), int(CloseCode.DECODE_ERROR))
# aiohttp raises ClientConnectionResetError (a ClientError and an OSError) for a write to a
# closing socket. RuntimeError is deliberately absent: it would hide our own bugs.
_NETWORK_ERRORS: Final = (aiohttp.ClientError, OSError)


class ShardState(enum.StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    IDENTIFYING = "identifying"
    RESUMING = "resuming"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    WAITING_PERMIT = "waiting_permit"
    STOPPED = "stopped"


class ShardClosed(Exception):
    """A command could not be sent because the shard stopped for good."""


class _Stop(enum.Enum):
    STOP = "stopped"
    SUSPEND = "suspended"
    KILL = "killed"


def gateway_url(base: str, compress: str) -> str:
    """``base`` (from /gateway/bot, or a ``resume_gateway_url`` that has no path) with the
    query every connection of this shard uses."""
    url = URL(base)
    if not url.path:
        url = url.with_path("/")
    query = {"v": str(API_VERSION), "encoding": "json"}
    mode = query_value(compress)
    if mode is not None:
        query["compress"] = mode
    return str(url.with_query(query))


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
        self._permits = permits
        self._reporter = reporter
        self.delivery = delivery
        self._push = delivery.push
        self.counters: ShardCounters = delivery.counters
        self._http = http
        self._clock = clock
        self._rng = rng or random.Random()
        self.backoff = Backoff(
            config.backoff_base_s,
            config.backoff_cap_s,
            config.backoff_stable_s,
            clock,
            self._rng,
            config.reconnect_quick_s,
        )
        if not decisions.keeps_session(config.zombie_close_code):
            raise ValueError(
                f"zombie_close_code {config.zombie_close_code} would end the session; "
                "use a code other than 1000/1001 (e.g. 4000)"
            )
        self._check_acks = config.check_heartbeat_acks
        self._presence = (
            msgspec.convert(config.presence, PresenceUpdate) if config.presence else None
        )
        # Encoded once: it never changes, and an over-size one is a configuration mistake
        # (a huge presence or properties) to report at start, not a close 4002 loop later.
        self._identify_payload = self._encode_identify()
        # Our Identify closed with 4001/4002 in a row: past two, identifying is hopeless.
        self._identify_rejects = 0
        # An IDENTIFY went out and the gateway has not yet shown it read it.
        self._identify_unseen = False

        # The session: what RESUME needs. ``seq`` is the last seq *received*.
        self.session_id: str | None = session.session_id if session else None
        self.resume_url: str | None = session.resume_url if session else None
        self.seq = session.seq if session else 0
        # Sessions of this shard are numbered so the checkpoint never mixes two of them.
        self._epoch = 0
        self._epoch_start_seq = self.seq
        self.guilds = 0
        self.latency_s: float | None = None
        self.duplicates = 0
        # Events dropped because even their replay exceeded max_message_bytes.
        self.skipped = 0
        # Where (session, seq) the last bad payload hit, and how many times in a row.
        self._bad_at: tuple[str | None, int] | None = None
        self._bad_repeats = 0
        self._skip_one = False
        # Connect failures on resume_gateway_url in a row; past a few, RESUME is tried on
        # the main URL instead (it accepts resumes, it only drops them sooner).
        self._resume_url_failures = 0
        self.identifies = 0
        self.resumes = 0

        self._state = ShardState.IDLE
        self._stop: _Stop | None = None
        self._stop_event = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False

        # Commands wait here (across reconnects) until a connection is ready for them.
        self._commands: deque[tuple[bytes, asyncio.Future[None]]] = deque()
        self._commands_event = asyncio.Event()

        # Per-connection state, replaced by ``_new_connection``.
        self._inflater: Inflater = make_inflater(config.compress, config.max_message_bytes)
        # Bound once per connection: the receive path calls it for every frame.
        self._inflate = self._inflater.feed
        self.monitor = HeartbeatMonitor(clock, self._check_acks)
        self.limiter = SendLimiter(clock=clock)
        self._ws: _WebSocket | None = None
        self._action: Action | None = None
        self._action_event = asyncio.Event()
        self._ready_event = asyncio.Event()
        self._deadline: float | None = None
        self._heartbeater: Heartbeater | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closer: asyncio.Task[None] | None = None

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
        return self.session_id is not None and self.resume_url is not None

    def session_info(self) -> ipc.SessionInfo | None:
        """The session as of the last event *received* (what this process resumes with)."""
        if self.session_id is None or self.resume_url is None:
            return None
        return ipc.SessionInfo(self.session_id, self.seq, self.resume_url)

    def checkpoint_session(self) -> ipc.SessionInfo | None:
        """The session as of the last event the handler *finished*: what another process
        must resume from so that nothing in flight is lost (at-least-once)."""
        if self.session_id is None or self.resume_url is None:
            return None
        checkpoint = self.delivery.checkpoint
        if checkpoint is not None and checkpoint[0] == self._epoch:
            seq = checkpoint[1]
        else:
            seq = self._epoch_start_seq
        return ipc.SessionInfo(self.session_id, seq, self.resume_url)

    def _set_state(self, state: ShardState) -> None:
        if state is not self._state:
            self._state = state
            if log.isEnabledFor(logging.DEBUG):
                log.debug("shard state", extra={"shard": self.shard_id, "state": state.value})
            self._reporter.state_changed(self.shard_id, state.value)

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
            self._bad_payload(exc.kind, str(exc))
            return
        if data is not None:
            self._message(data)

    def feed_text(self, data: bytes) -> None:
        self.monitor.received_since_beat = True
        self.counters.bytes_compressed += len(data)
        if len(data) > self.config.max_message_bytes:
            self._bad_payload("oversized", f"message above {self.config.max_message_bytes} bytes")
            return
        self._message(data)

    def _message(self, data: bytes) -> None:
        counters = self.counters
        counters.bytes_inflated += len(data)
        try:
            envelope = decode_envelope_raw(data)
        except ENVELOPE_ERRORS as exc:
            detail = "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            self._bad_payload("bad_json", detail)
            return
        op = envelope.op
        if op == 0:  # DISPATCH, as a constant: this branch runs for every event
            name = envelope.t or ""
            seq = envelope.s
            if name == "READY" or name == "RESUMED":
                # Before the duplicate check: these end the handshake whatever their seq
                # (a RESUMED may carry the last seq we already have).
                stale = name == "RESUMED" and seq is not None and seq <= self.seq
                if not self._on_session_event(name, envelope.d, None if stale else seq):
                    return
                if stale:
                    seq = None  # delivered, but never moves the checkpoint backwards
            elif seq is not None and seq <= self.seq:
                # Already received in this session (a replay overlapping what we have):
                # delivering it again would be a duplicate.
                self.duplicates += 1
                self.counters.duplicates += 1
                return
            else:
                if self._deadline is not None:
                    # A long replay is progress, not a stuck handshake.
                    self._deadline = self._clock.monotonic() + self.config.ready_timeout_s
                if seq is not None:
                    self.seq = seq
            # No per-dispatch log line: the ``log`` handler is there for that, and even a
            # disabled logger's level check costs ~3% of this path (make bench).
            events = counters.events
            events[name] = events.get(name, 0) + 1
            self._push(Event(self.shard_id, seq, name, envelope.d, self._epoch, self.session_id))
        elif op == Op.HEARTBEAT_ACK:
            latency = self.monitor.on_ack()
            if latency is not None:
                self.latency_s = latency
                counters.latencies_s.append(latency)
        elif op == Op.HELLO:
            self._on_hello(envelope.d)
        elif op == Op.HEARTBEAT:
            # Owned by this connection's task list: cancelled with it, never beating on
            # the next socket.
            if self._heartbeater is not None and self._ws is not None:
                self._spawn(self._beat(requested=True))
        elif op == Op.RECONNECT:
            self._end(decisions.decide_reconnect_request(self.has_session))
        elif op == Op.INVALID_SESSION:
            self._identify_seen()
            try:
                resumable = _decode_bool(envelope.d)
            except msgspec.DecodeError:
                resumable = False
            action = decisions.decide_invalid_session(resumable, self.has_session)
            if action.next is Next.IDENTIFY:
                self._drop_session()
            self._end(action)
        else:
            log.debug("ignoring unknown opcode", extra={"shard": self.shard_id, "op": op})

    def _bad_payload(self, kind: str, detail: str) -> None:
        self.counters.bad_payloads += 1
        here = (self.session_id, self.seq)
        if self.session_id is not None and self._bad_at == here:
            self._bad_repeats += 1
        else:
            self._bad_at = here
            self._bad_repeats = 1
        if self._bad_repeats >= _SKIP_AFTER_FAILURES:
            # The same point failed again and again: the replay keeps sending an event we
            # cannot take (too large, bad JSON, corrupt, an invalid seq), and resuming
            # would loop on it forever. Resume past it; the loss is logged and counted,
            # never silent.
            self._skip_one = True
            self._bad_repeats = 0
            self._bad_at = None
            log.error(
                "dropping an event the gateway keeps replaying undecodable",
                extra={"shard": self.shard_id, "seq": self.seq + 1, "kind": kind},
            )
        log.warning(
            "bad payload from gateway",
            extra={"shard": self.shard_id, "kind": kind, "detail": detail[:200]},
        )
        self._end(decisions.decide_bad_payload(self.has_session, f"{kind}: {detail}"))

    def _on_hello(self, body: msgspec.Raw) -> None:
        if self._heartbeater is not None or self._action is not None:
            return
        try:
            hello = _decode_hello(body)
        except msgspec.DecodeError as exc:
            self._bad_payload("bad_json", f"hello: {exc}")
            return
        interval_s = hello.heartbeat_interval / 1000.0
        # The 120/60 s budget is per connection: a fresh limiter with room for beats.
        self.limiter = SendLimiter(reserve=heartbeat_reserve(interval_s), clock=self._clock)
        self._deadline = None
        self._heartbeater = Heartbeater(
            interval_s, self.monitor, self._beat, self._on_zombie, self._clock, self._rng
        )
        if self._ws is None:
            return  # driven without a socket (benchmarks): no I/O to start
        self._spawn(self._heartbeater.run())
        self._spawn(self._resume() if self.has_session else self._identify())

    def _on_session_event(self, name: str, body: msgspec.Raw, seq: int | None) -> bool:
        if name == "READY":
            try:
                ready = _decode_ready(body)
            except msgspec.DecodeError as exc:
                # The seq has not moved: the READY is replayed or identify is retried.
                self._bad_payload("bad_json", f"READY: {exc}")
                return False
            if seq is not None:
                self.seq = seq
            self._on_ready(ready)
            return True
        # RESUMED's body is undocumented and unused: never a reason to reject it.
        if seq is not None:
            self.seq = seq
        if self._state is ShardState.RESUMING:
            self._connected("resume")
        return True

    def _on_ready(self, ready: ReadySession) -> None:
        self._identify_seen()
        self._identify_rejects = 0
        self.session_id = ready.session_id
        self.resume_url = ready.resume_gateway_url
        self._epoch += 1
        self._epoch_start_seq = 0
        self.guilds = len(ready.guilds)
        self._connected("identify")

    def _connected(self, kind: str) -> None:
        self._deadline = None
        self._set_state(ShardState.CONNECTED)
        self.backoff.connected()
        self._ready_event.set()
        self._commands_event.set()
        info = self.session_info()
        if info is not None:
            self._reporter.session_started(self.shard_id, kind, info, self.guilds)
        log.info(
            "shard connected",
            extra={"shard": self.shard_id, "kind": kind, "seq": self.seq},
        )

    def _drop_session(self) -> None:
        self.session_id = None
        self.resume_url = None
        self.seq = 0

    # ------------------------------------------------------------------ sending

    async def _send_now(self, data: bytes, priority: bool) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionResetError("not connected")
        await self.limiter.acquire(priority)
        await ws.send_frame(data, _TEXT)

    async def _beat(self, requested: bool = False) -> None:
        # Bound to this connection's socket, monitor and limiter for the whole send.
        ws = self._ws
        monitor = self.monitor
        limiter = self.limiter
        try:
            if ws is None or ws.closed:
                return
            await limiter.acquire(True)
            if ws is not self._ws:
                return
            # Marked before the write so an ACK racing the write is still matched.
            if requested:
                monitor.on_requested_sent()
            else:
                monitor.on_sent()
            await ws.send_frame(encode(Op.HEARTBEAT, self.seq or None), _TEXT)
        except _NETWORK_ERRORS as exc:
            self._end(decisions.decide_network(self.has_session, f"heartbeat send: {exc}"))

    def _on_zombie(self) -> None:
        log.warning(
            "zombie connection: heartbeat not acknowledged and nothing received",
            extra={"shard": self.shard_id},
        )
        self._end(decisions.decide_zombie(self.has_session, self.config.zombie_close_code))

    async def _identify(self) -> None:
        self._set_state(ShardState.WAITING_PERMIT)
        try:
            await self._permits.acquire(self.shard_id)
        except PermitRefused as exc:
            self._end(
                Action(
                    Next.STOP,
                    Reason.CLOSE_CODE,
                    send_close=CloseCode.NORMAL,
                    detail=f"identify refused: {exc}",
                )
            )
            return
        self._set_state(ShardState.IDENTIFYING)
        self._deadline = self._clock.monotonic() + self.config.ready_timeout_s
        self.identifies += 1
        self.counters.identifies += 1
        # Once the write may have begun the grant is spent; only a socket already gone
        # gives it back unused. When the bucket's next window may start is settled later,
        # by ``_identify_seen``.
        ws = self._ws
        may_leave = ws is not None and not ws.closed
        # Set before the write: the answer may be read while this task waits on a drain.
        self._identify_unseen = may_leave
        try:
            await self._send_now(self._identify_payload, priority=True)
        except _NETWORK_ERRORS as exc:
            self._end(decisions.decide_network(False, f"identify send: {exc}"))
        finally:
            if not may_leave:
                self._permits.unused(self.shard_id)

    def _identify_seen(self) -> None:
        """Discord times the window from when it reads the IDENTIFY, and a busy gateway (or
        network) reads it late: timing the next one from our send is early by that delay.
        So the window starts only once the gateway has provably read it: its answer (READY
        or op 9) arrived, or the connection is gone. Every later IDENTIFY of the bucket
        then reaches Discord at least one window after it read this one, whatever the
        latency, at the cost of one round trip per window."""
        if self._identify_unseen:
            self._identify_unseen = False
            self._permits.sent(self.shard_id)

    def _encode_identify(self) -> bytes:
        config = self.config
        props = config.identify_properties
        payload = Identify(
            token=config.token,
            properties=IdentifyProperties(
                os=props.get("os", sys.platform),
                browser=props.get("browser", "shardmgr"),
                device=props.get("device", "shardmgr"),
            ),
            intents=config.intents,
            compress=config.compress == "payload",
            large_threshold=config.large_threshold,
            shard=[self.shard_id, config.num_shards],
            presence=self._presence,
        )
        data = encode(Op.IDENTIFY, payload)
        if len(data) > MAX_CLIENT_PAYLOAD:
            raise ValueError(
                f"identify payload is {len(data)} bytes, above the gateway's "
                f"{MAX_CLIENT_PAYLOAD}: shorten the presence or identify_properties"
            )
        return data

    async def _resume(self) -> None:
        assert self.session_id is not None
        self._set_state(ShardState.RESUMING)
        if self._skip_one:
            self._skip_one = False
            self.seq += 1
            self.skipped += 1
            self.counters.skipped += 1
        payload = Resume(token=self.config.token, session_id=self.session_id, seq=self.seq)
        self._deadline = self._clock.monotonic() + self.config.ready_timeout_s
        self.resumes += 1
        self.counters.resumes += 1
        try:
            await self._send_now(encode(Op.RESUME, payload), priority=True)
        except _NETWORK_ERRORS as exc:
            self._end(decisions.decide_network(True, f"resume send: {exc}"))

    async def _send_commands(self) -> None:
        """Drains the command queue through the limiter, only on a ready connection."""
        commands = self._commands
        while True:
            await self._ready_event.wait()
            while commands:
                data, future = commands[0]
                if future.cancelled():
                    commands.popleft()
                    continue
                try:
                    await self._send_now(data, priority=False)
                except _NETWORK_ERRORS as exc:
                    # Left at the head of the queue for the next connection.
                    self._end(decisions.decide_network(self.has_session, f"send: {exc}"))
                    return
                commands.popleft()
                if not future.done():
                    future.set_result(None)
            self._commands_event.clear()
            await self._commands_event.wait()

    async def send_raw(self, data: bytes) -> None:
        """Queue an encoded payload; returns once it has been written to a ready connection.
        Commands survive reconnects; they fail only if the shard stops for good."""
        if len(data) > MAX_CLIENT_PAYLOAD:
            raise ValueError(f"payload of {len(data)} bytes exceeds {MAX_CLIENT_PAYLOAD}")
        if self._stop is not None or (self._state is ShardState.STOPPED and self._running):
            raise ShardClosed(f"shard {self.shard_id} is stopped")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commands.append((data, future))
        self._commands_event.set()
        await future

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
        await self.send_packet(
            Op.PRESENCE_UPDATE,
            {"since": since, "activities": activities or [], "status": status, "afk": afk},
        )

    async def update_voice_state(
        self,
        guild_id: str | int,
        channel_id: str | int | None,
        self_mute: bool = False,
        self_deaf: bool = False,
    ) -> None:
        """Op 4; ``channel_id=None`` leaves the voice channel."""
        await self.send_packet(
            Op.VOICE_STATE_UPDATE,
            VoiceStateUpdate(
                guild_id=str(guild_id),
                channel_id=None if channel_id is None else str(channel_id),
                self_mute=self_mute,
                self_deaf=self_deaf,
            ),
        )

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
        if (query is None) == (user_ids is None):
            raise ValueError("request_members needs exactly one of query or user_ids")
        if nonce is not None and len(nonce.encode()) > 32:
            raise ValueError("nonce must be at most 32 bytes")
        ids: str | list[str] | None
        if user_ids is None:
            ids = None
        elif isinstance(user_ids, list):
            ids = [str(u) for u in user_ids]
        else:
            ids = str(user_ids)
        await self.send_packet(
            Op.REQUEST_GUILD_MEMBERS,
            RequestGuildMembers(
                guild_id=str(guild_id),
                query=query,
                limit=limit if query is not None else None,
                presences=presences,
                user_ids=ids,
                nonce=nonce,
            ),
        )

    # ------------------------------------------------------------------ connection

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)

    def _end(self, action: Action, kill: bool = False, override: bool = False) -> None:
        """End the current connection for ``action``; the first reason wins, except that
        ``override`` (a stop/suspend/kill request) replaces a reason whose close frame has
        not gone out yet, and a kill always drops the socket at once."""
        if self._action is not None:
            ws = self._ws
            if kill and ws is not None:
                _abort(ws)
            if override and self._closer is None:
                self._action = action
            return
        self._action = action
        self._action_event.set()
        ws = self._ws
        if ws is not None and self._closer is None:
            self._closer = asyncio.get_running_loop().create_task(self._close_ws(ws, action, kill))

    async def _close_ws(self, ws: _WebSocket, action: Action, kill: bool) -> None:
        if kill:
            _abort(ws)
            return
        code = action.send_close if action.send_close is not None else RESUMABLE_CLIENT_CLOSE
        timeout = self.config.close_timeout_s
        if action.reason is Reason.ZOMBIE and self._heartbeater is not None:
            # The peer is presumed dead: do not wait long for its close reply.
            timeout = min(timeout, self._heartbeater.interval_s / 2)
        try:
            await asyncio.wait_for(ws.close(code=code), timeout)
        except (TimeoutError, *_NETWORK_ERRORS):
            _abort(ws)

    def _new_connection(self) -> None:
        self._inflater = make_inflater(self.config.compress, self.config.max_message_bytes)
        self._inflate = self._inflater.feed
        self.monitor = HeartbeatMonitor(self._clock, self._check_acks)
        self._action = None
        self._action_event.clear()
        self._ready_event.clear()
        self._heartbeater = None
        self._closer = None
        self._deadline = self._clock.monotonic() + self.config.hello_timeout_s

    async def _connect_once(self, http: aiohttp.ClientSession) -> Action:
        self._new_connection()
        resume = self.has_session
        base = self.config.gateway_url
        if resume and self.resume_url and self._resume_url_failures < _RESUME_URL_ATTEMPTS:
            base = self.resume_url
        url = gateway_url(base, self.config.compress)
        self._set_state(ShardState.CONNECTING)
        try:
            async with asyncio.timeout(self.config.hello_timeout_s):
                ws = await http.ws_connect(
                    url,
                    autoclose=False,
                    autoping=True,
                    # No cap in aiohttp: an over-size frame there closes the socket
                    # itself (1009) and bypasses the bad-payload rules. The cap is
                    # enforced after inflation, in the inflater and ``feed_text``.
                    max_msg_size=0,
                    decode_text=False,
                    timeout=aiohttp.ClientWSTimeout(
                        ws_receive=None, ws_close=self.config.close_timeout_s
                    ),
                )
        except TimeoutError:
            self._resume_url_failures += resume
            return decisions.decide_timeout(resume, "websocket connect timed out")
        except (aiohttp.ClientError, OSError) as exc:
            self._resume_url_failures += resume
            return decisions.decide_network(resume, f"connect: {exc}")
        self._resume_url_failures = 0
        self._ws = ws
        if self._stop is not None:
            # stop()/suspend() arrived while connecting.
            self._end(self._stop_action())
        self._spawn(self._send_commands())
        try:
            await self._read(ws)
        finally:
            for task in self._tasks:
                task.cancel()
            closer = self._closer
            if closer is None and not ws.closed:
                closer = asyncio.get_running_loop().create_task(
                    self._close_ws(ws, self._action or _CANCELLED, False)
                )
            pending = [*self._tasks, *([closer] if closer else [])]
            self._tasks = []
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            self._ws = None
            self._heartbeater = None
            self._identify_seen()
        return self._action or decisions.decide_network(self.has_session, "connection lost")

    async def _read(self, ws: _WebSocket) -> None:
        clock = self._clock
        while self._action is None:
            timeout: float | None = None
            if self._deadline is not None:
                timeout = self._deadline - clock.monotonic()
                if timeout <= 0:
                    self._end(self._timeout_action())
                    return
            try:
                msg = await ws.receive(timeout)
            except TimeoutError:
                self._end(self._timeout_action())
                return
            kind = msg.type
            if kind is _BINARY:
                self.feed(msg.data)
            elif kind is _TEXT:
                data = msg.data
                self.feed_text(data if isinstance(data, bytes) else data.encode())
            elif kind is _CLOSE:
                code = msg.data if isinstance(msg.data, int) else None
                self._server_closed(code, msg.extra)
                return
            else:
                if self._action is None:
                    if kind is aiohttp.WSMsgType.ERROR:
                        self._bad_payload("bad_frame", f"{msg.data}")
                    else:
                        self._end(decisions.decide_network(self.has_session, "connection lost"))
                return
            if self.delivery.hold and self._action is None:
                await self.give_handler_a_turn()

    async def give_handler_a_turn(self) -> None:
        """The backlog asked the reader to hold (``Delivery.hold``): yield once so the
        handler task runs, or, when the backlog is full, wait until it has room."""
        delivery = self.delivery
        delivery.hold = False
        if not delivery.full:
            await asyncio.sleep(0)
            return
        await self._wait_for_room()

    async def _wait_for_room(self) -> None:
        """The handler is behind: stop reading (the backlog stays bounded, nothing is
        dropped) while heartbeats keep flowing from their own task."""
        self.monitor.paused = True
        paused_at = self._clock.monotonic()
        room = asyncio.ensure_future(self.delivery.wait_room())
        ended = asyncio.ensure_future(self._action_event.wait())
        try:
            await asyncio.wait((room, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.cancel()
            ended.cancel()
            if self._deadline is not None:
                # Time spent not reading says nothing about a slow READY/RESUMED.
                self._deadline += self._clock.monotonic() - paused_at
            self.monitor.paused = False
            self.monitor.received_since_beat = True

    def _server_closed(self, code: int | None, reason: str | None) -> None:
        action = decisions.decide_close(code, self.has_session)
        if code in _IDENTIFY_REJECTED and self._state is ShardState.IDENTIFYING:
            self._identify_rejects += 1
            if self._identify_rejects >= 2:
                # The gateway rejects the very payload we send; sending it again can only
                # loop (and spend identify budget).
                action = Action(
                    Next.STOP,
                    Reason.CLOSE_CODE,
                    close_code=code,
                    detail=f"gateway rejected our identify twice in a row (close {code})",
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
            self._drop_session()
        self._end(action)

    def _timeout_action(self) -> Action:
        waiting_for = "HELLO" if self._heartbeater is None else "READY/RESUMED"
        return decisions.decide_timeout(self.has_session, f"no {waiting_for} in time")

    def _stop_action(self) -> Action:
        keep = self._stop is not _Stop.STOP
        return Action(
            Next.STOP,
            Reason.CLOSE_CODE,
            send_close=RESUMABLE_CLIENT_CLOSE if keep else CloseCode.NORMAL,
            detail=self._stop.value if self._stop else "stopped",
        )

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Connect, reconnect and resume until stopped or a fatal close. Owned by the
        runtime's task; cancelling it closes the connection with a session-keeping code
        (use ``stop()`` to end the session, ``kill()`` to drop without a close frame)."""
        self._running = True
        own_http = self._http is None
        http = self._http or aiohttp.ClientSession()
        try:
            while self._stop is None:
                try:
                    action = await self._connect_once(http)
                except Exception as exc:
                    # A bug or an unforeseen error must cost this connection only, never
                    # the shard (or, through a dead task, the worker's other shards).
                    log.exception(
                        "unexpected error on shard connection", extra={"shard": self.shard_id}
                    )
                    action = decisions.decide_network(self.has_session, f"unexpected: {exc!r}")
                if self._stop is not None:
                    break
                if action.next is Next.STOP:
                    self._fatal(action)
                    return
                # An IDENTIFY action has already dropped the session where it was decided
                # (op 9, close code, inject_reconnect).
                delay = self.backoff.next_delay(
                    quick=action.reason is Reason.OP7 or action.reason is Reason.ZOMBIE
                )
                low, high = action.min_delay
                if high > 0:
                    delay = max(delay, self._rng.uniform(low, high))
                resume = action.next is Next.RESUME
                self._set_state(ShardState.RECONNECTING)
                self._reporter.reconnecting(
                    self.shard_id, action.reason.value, action.close_code, resume, delay
                )
                log.info(
                    "shard reconnecting",
                    extra={
                        "shard": self.shard_id,
                        "reason": action.reason.value,
                        "code": action.close_code,
                        "resume": resume,
                        "delay_s": round(delay, 3),
                        "detail": action.detail[:200],
                    },
                )
                await self._sleep_unless_stopped(delay)
            await self._finish_stop()
        finally:
            self._set_state(ShardState.STOPPED)
            self._fail_commands()
            if own_http:
                await http.close()
            self._done.set()

    async def _sleep_unless_stopped(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        stopped = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait((sleeper, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopped.cancel()

    def _fatal(self, action: Action) -> None:
        reason = action.detail or f"close code {action.close_code}"
        log.error(
            "shard stopped for good",
            extra={"shard": self.shard_id, "code": action.close_code, "reason": reason},
        )
        self._reporter.stopped(self.shard_id, reason, action.close_code, True, None)

    async def _finish_stop(self) -> None:
        """After a requested stop/suspend/kill: let queued events reach the handler (the
        checkpoint then covers them), then report."""
        kind = self._stop or _Stop.STOP
        try:
            async with asyncio.timeout(self.config.drain_timeout_s):
                await self.delivery.wait_idle()
        except TimeoutError:
            log.warning(
                "handler backlog not drained before close; it will be replayed",
                extra={"shard": self.shard_id, "backlog": self.delivery.backlog},
            )
        session = None if kind is _Stop.STOP else self.checkpoint_session()
        if kind is _Stop.STOP:
            self._drop_session()
        self._reporter.stopped(self.shard_id, kind.value, None, False, session)

    def _fail_commands(self) -> None:
        while self._commands:
            _, future = self._commands.popleft()
            if not future.done():
                future.set_exception(ShardClosed(f"shard {self.shard_id} stopped"))

    def _request_stop(self, kind: _Stop) -> None:
        if self._stop is None:
            self._stop = kind
        self._stop_event.set()
        self._end(self._stop_action(), kill=kind is _Stop.KILL, override=True)

    async def _wait_done(self) -> None:
        if self._running:
            await self._done.wait()
        else:
            self._set_state(ShardState.STOPPED)

    async def stop(self) -> None:
        """Close with 1000: the session ends and the bot goes offline on this shard."""
        self._request_stop(_Stop.STOP)
        await self._wait_done()

    async def suspend(self) -> ipc.SessionInfo | None:
        """Close with a session-keeping code and return the session (seq = the checkpoint)
        so that another process can resume it."""
        self._request_stop(_Stop.SUSPEND)
        await self._wait_done()
        return self.checkpoint_session()

    def kill(self) -> None:
        """Drop the TCP connection without a close frame and stop (the session stays
        resumable on the gateway, as after a crash)."""
        self._request_stop(_Stop.KILL)

    # ------------------------------------------------------------------ test hooks

    def inject_error(self, exc: BaseException) -> None:
        """Treat ``exc`` as a failure of the current connection: close it (keeping the
        session) and reconnect."""
        log.warning("injected error", extra={"shard": self.shard_id, "error": repr(exc)})
        self._end(decisions.decide_network(self.has_session, f"injected: {exc!r}"))

    def inject_reconnect(self, resume: bool = True) -> None:
        """Reconnect as if the gateway sent op 7; ``resume=False`` drops the session first
        (close 1000) so the shard identifies afresh."""
        if resume:
            self._end(decisions.decide_reconnect_request(self.has_session))
            return
        self._drop_session()
        self._end(Action(Next.IDENTIFY, Reason.OP7, send_close=CloseCode.NORMAL))

    def inject_resume(self, seq: int | None = None) -> None:
        """Reconnect and RESUME from ``seq`` (default: the last received), so that the
        gateway replays everything after it."""
        if seq is not None:
            self.seq = seq
        self._end(decisions.decide_reconnect_request(self.has_session))


_CANCELLED: Final = Action(Next.STOP, Reason.NETWORK, send_close=RESUMABLE_CLIENT_CLOSE)


def _abort(ws: _WebSocket) -> None:
    """Drop the connection without a close frame (aiohttp has no public abort)."""
    response = ws._response
    response.close()
