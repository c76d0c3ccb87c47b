"""The websocket side of the fake gateway: one ``Connection`` per socket, speaking Discord's
protocol (Hello, heartbeats, Identify/Resume validation with the real close codes, READY and
the GUILD_CREATE burst, replay, op 3/4/8/31/43) and carrying out injected faults."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any, Final

import msgspec
from aiohttp import WSMsgType, web

from fakegateway import client_requests, inbound
from fakegateway.codec import COMPRESS_MODES, Encoder, Frame
from fakegateway.sessions import SESSION_ENDING_CLOSE_CODES, Session
from fakegateway.state import STATE_KEY, FakeState
from fakegateway.state import Connection as LiveConnection
from fakegateway.traffic import ShardTraffic
from workers.logsetup import fields
from workers.protocol import (
    INTENT_BITS,
    MAX_CLIENT_PAYLOAD,
    SEND_LIMIT,
    SEND_WINDOW_S,
    CloseCode,
    Op,
    decode_envelope,
)

log = logging.getLogger("fakegateway.gateway")

ACK: Final = b'{"t":null,"s":null,"op":11,"d":null}'
RECONNECT: Final = b'{"t":null,"s":null,"op":7,"d":null}'
HEARTBEAT_REQUEST: Final = b'{"t":null,"s":null,"op":1,"d":null}'
INVALID_SESSION: Final = {
    True: b'{"t":null,"s":null,"op":9,"d":true}',
    False: b'{"t":null,"s":null,"op":9,"d":false}',
}
TRACE: Final = b'["[\\"gateway-prd-fake-1\\",{\\"micros\\":0.0}]"]'
SUPPORTED_VERSIONS: Final = frozenset({"9", "10"})
_encoder: Final = msgspec.json.Encoder()


# Writer queue items: a whole message (payload, seq or 0, session) or raw frames.
_Item = tuple[bytes, int, Session | None] | list[Frame] | None
# Queued after the frames of a fault that leaves the stream broken: stop sending from here.
_STALL_MARK: Final[list[Frame]] = []


class Connection:
    """One websocket. All outbound traffic goes through ``_queue`` to a single writer task,
    which keeps the compression stream and the sequence order intact."""

    def __init__(self, state: FakeState, request: web.Request, on_resume_url: bool) -> None:
        self.state = state
        self.id = state.new_connection_id()
        self.request = request
        self.on_resume_url = on_resume_url
        self.ws = web.WebSocketResponse(
            autoping=True,
            compress=False,
            # Oversized client payloads must reach us so we can answer 4002 ourselves.
            max_msg_size=1 << 20,
            timeout=state.config.close_timeout_s,
        )
        self.encoder: Encoder | None = None
        self.session: Session | None = None
        self.identify_pending = False
        self.zombie = False
        self.stalled = False
        self.closing = False
        self.server_close_code: int | None = None
        self.traffic_credit = 0.0
        self.last_heartbeat = state.clock.monotonic()
        self._sends: collections.deque[float] = collections.deque()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._close_task: asyncio.Task[None] | None = None
        # Set while no writer runs, so a close before the writer starts does not wait.
        self._writer_done = asyncio.Event()
        self._writer_done.set()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> web.WebSocketResponse:
        state = self.state
        cfg = state.config
        await self.ws.prepare(self.request)
        state.connections[self.id] = self
        state.stats.connections_total += 1
        state.changed()
        client_code: int | None = None
        try:
            query = self.request.query
            mode = COMPRESS_MODES.get(query.get("compress"))
            if query.get("v") not in SUPPORTED_VERSIONS:
                await self._close_now(CloseCode.INVALID_API_VERSION, b"Invalid API version")
                return self.ws
            if query.get("encoding", "json") != "json" or mode is None:
                await self._close_now(CloseCode.DECODE_ERROR, b"Unsupported encoding")
                return self.ws
            self.encoder = Encoder(
                mode,
                chunk_bytes=cfg.zlib_chunk_bytes,
                payload_threshold=cfg.payload_compress_threshold,
            )
            self._writer_done.clear()
            self._spawn(self._writer())
            if state.hello_reconnects > 0:
                # A draining node: op 7 where Hello should be.
                state.hello_reconnects -= 1
                self.send(RECONNECT)
                self.schedule_close(cfg.reconnect_close_after_s, 1001)
            else:
                interval_ms = round(cfg.heartbeat_interval_s * 1000)
                self.send(
                    b'{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":%d,"_trace":%s}}'
                    % (interval_ms, TRACE)
                )
                self.last_heartbeat = state.clock.monotonic()
                self._spawn(self._watchdog())
            client_code = await self._read_loop()
        finally:
            await self._finish(client_code)
        return self.ws

    async def _read_loop(self) -> int | None:
        """Read until the socket closes; returns the client's close code (None: no frame)."""
        ws = self.ws
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                if not self.closing:
                    self._on_payload(msg.data)
            elif msg.type is WSMsgType.CLOSE:
                return int(msg.data) if msg.data is not None else 1005
            elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return None

    async def _finish(self, client_code: int | None) -> None:
        state = self.state
        self.closing = True
        self._queue.put_nowait(None)
        closer = self._close_task
        if closer is not None:
            # Let our own close handshake finish rather than cutting it short.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(closer)
        for task in list(self._tasks):
            if task is not closer:
                task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.server_close_code is None:
            key = str(client_code) if client_code is not None else "1006"
            state.stats.client_closes_by_code[key] += 1
        session = self.session
        if session is not None and session.connection_id == self.id:
            if self.server_close_code is None and client_code in (1000, 1001):
                session.end(f"client_close_{client_code}", by_server=False)
            elif session.state != "ended":
                state.sessions.disconnected(session)
        self.session = None
        state.connections.pop(self.id, None)
        state.changed()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ output

    def send(self, payload: bytes) -> None:
        """Queue a non-dispatch message (Hello, ACK, op 7, op 9...)."""
        if not self.closing:
            self._queue.put_nowait((payload, 0, None))

    def send_frames(self, frames: list[Frame]) -> None:
        if not self.closing:
            self._queue.put_nowait(frames)

    def stalled_after_queue(self) -> None:
        """Stall once everything queued so far has been written."""
        if not self.closing:
            self._queue.put_nowait(_STALL_MARK)

    def schedule_close(self, delay: float, code: int) -> None:
        self._spawn(self._close_later(delay, code))

    def dispatch(self, event: str, body: bytes) -> int:
        """Give the event the session's next sequence number, keep it for replay, send it."""
        session = self.session
        if session is None:
            raise RuntimeError("dispatch on a connection without a session")
        seq, payload = session.dispatch(event, body)
        self.state.stats.dispatches_generated += 1
        if not self.closing:
            self._queue.put_nowait((payload, seq, session))
        return seq

    async def _writer(self) -> None:
        ws = self.ws
        stats = self.state.stats
        encoder = self.encoder
        assert encoder is not None
        queue = self._queue
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if self.stalled:
                    continue
                if item is _STALL_MARK:
                    self.stalled = True
                    continue
                if isinstance(item, list):
                    frames = item
                    seq, session = 0, None
                else:
                    payload, seq, session = item
                    if payload is ACK and self.zombie:
                        continue
                    frames = encoder.encode(payload)
                for data, binary in frames:
                    await ws.send_frame(data, WSMsgType.BINARY if binary else WSMsgType.TEXT)
                if seq:
                    stats.dispatches_sent += 1
                    if session is not None and seq > session.last_seq_sent:
                        session.last_seq_sent = seq
        except (ConnectionError, RuntimeError) as exc:
            log.debug("writer stopped", extra=fields(conn=self.id, error=str(exc)))
        finally:
            self._writer_done.set()

    # ------------------------------------------------------------------ closing

    def close(self, code: int, reason: bytes = b"") -> None:
        """Close from the server side with ``code`` (the session's fate follows the code)."""
        if self.closing:
            return
        self._mark_server_close(code)
        task: asyncio.Task[None] = asyncio.ensure_future(self._close_ws(code, reason))
        self._close_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_now(self, code: int, reason: bytes = b"") -> None:
        if self.closing:
            return
        self._mark_server_close(code)
        await self._close_ws(code, reason)

    def _mark_server_close(self, code: int) -> None:
        self.closing = True
        self.server_close_code = code
        self.state.stats.closes_by_code[str(code)] += 1
        session = self.session
        if session is not None and session.connection_id == self.id:
            if code in SESSION_ENDING_CLOSE_CODES:
                session.end(str(code), by_server=True)
            else:
                self.state.sessions.disconnected(session)
        self.state.changed()

    async def _close_ws(self, code: int, reason: bytes) -> None:
        # Let queued messages (e.g. the op 9 before a close) go out first.
        self._queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer_done.wait(), self.state.config.close_timeout_s)
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason)

    async def _close_later(self, delay: float, code: int) -> None:
        await self.state.clock.sleep(delay)
        self.close(code)

    def cut(self) -> None:
        """Drop TCP without a close frame, as a crashed node or a network fault would."""
        if self.closing:
            return
        self.closing = True
        # Counted as the server's doing, under the code the client will observe.
        self.server_close_code = CloseCode.ABNORMAL
        self.state.stats.closes_by_code[str(int(CloseCode.ABNORMAL))] += 1
        session = self.session
        if session is not None and session.connection_id == self.id:
            self.state.sessions.disconnected(session)
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        self.state.changed()

    # ------------------------------------------------------------------ input

    def _on_payload(self, data: str | bytes) -> None:
        state = self.state
        now = state.clock.monotonic()
        state.stats.payloads_received += 1
        # Every counter a wait_for predicate may read changes below, heartbeats included.
        state.changed()
        sends = self._sends
        sends.append(now)
        while sends and now - sends[0] >= SEND_WINDOW_S:
            sends.popleft()
        if len(sends) > SEND_LIMIT:
            self.close(CloseCode.RATE_LIMITED, b"You are being rate limited.")
            return
        raw = data.encode() if isinstance(data, str) else data
        if len(raw) > MAX_CLIENT_PAYLOAD:
            self.close(CloseCode.DECODE_ERROR, b"Error while decoding payload.")
            return
        try:
            env = decode_envelope(raw)
        except msgspec.DecodeError:
            self.close(CloseCode.DECODE_ERROR, b"Error while decoding payload.")
            return
        op = env.op
        d = env.d
        try:
            if op == Op.HEARTBEAT:
                self._on_heartbeat(now)
            elif op == Op.IDENTIFY:
                self._on_identify(inbound.IDENTIFY.decode(d))
            elif op == Op.RESUME:
                self._on_resume(inbound.RESUME.decode(d))
            elif self.session is None:
                self.close(CloseCode.NOT_AUTHENTICATED, b"Not authenticated.")
            elif op not in client_requests.ANSWERED_OPS:
                self.close(CloseCode.UNKNOWN_OPCODE, b"Unknown opcode.")
            else:
                answers = client_requests.answer(state, self.session, op, d)
                state.stats.requests_by_op[str(op)] += 1
                self.session.requests_by_op[str(op)] += 1
                self._answer(answers)
        except (msgspec.ValidationError, ValueError):
            # A known opcode with a payload of the wrong shape.
            self.close(CloseCode.UNKNOWN_OPCODE, b"Invalid payload for opcode.")

    def _on_heartbeat(self, now: float) -> None:
        self.last_heartbeat = now
        self.state.stats.heartbeats += 1
        if not self.zombie and not self.stalled:
            self.state.stats.heartbeat_acks += 1
            self.send(ACK)

    def _on_identify(self, ident: inbound.IdentifyIn) -> None:
        state = self.state
        cfg = state.config
        stats = state.stats
        if self.session is not None or self.identify_pending:
            self.close(CloseCode.ALREADY_AUTHENTICATED, b"Already authenticated.")
            return
        stats.identify_attempts += 1
        bot = state.authenticate(ident.token)
        shard_id, num_shards = inbound.shard_pair(ident)
        record: dict[str, Any] = {
            "at": round(state.uptime(), 6),
            "shard_id": shard_id,
            "num_shards": num_shards,
            "bucket": state.buckets.bucket(shard_id),
            "connection": self.id,
        }
        rejection = inbound.check_identify(
            ident,
            authenticated=bot is not None,
            config=cfg,
            guild_count=lambda: len(state.world.guilds_for(shard_id, num_shards)),
            max_guilds_per_shard=state.max_guilds_per_shard,
        )
        if rejection is not None or bot is None:
            code, reason = rejection or (CloseCode.AUTHENTICATION_FAILED, b"")
            record["outcome"] = str(code)
            state.identify_log.append(record)
            self.close(code, reason)
            return
        intents = ident.intents or 0
        guilds = state.world.guilds_for(shard_id, num_shards)
        if not state.buckets.try_acquire(shard_id):
            stats.identify_violations += 1
            record["outcome"] = "violation"
            state.identify_log.append(record)
            log.warning(
                "identify concurrency violated",
                extra=fields(shard=shard_id, bucket=state.buckets.bucket(shard_id)),
            )
            if cfg.violation_consumes_start:
                state.budget.spend()
            self.identify_pending = True
            self._spawn(self._invalid_session_later(cfg.invalid_session_delay_s))
            state.changed()
            return
        if not state.budget.spend():
            record["outcome"] = "budget_exhausted"
            state.identify_log.append(record)
            if cfg.token_reset_on_exhaustion:
                reset_token(state)
            else:
                self.send(INVALID_SESSION[False])
            return
        record["outcome"] = "ok"
        state.identify_log.append(record)
        stats.identifies += 1
        session = Session(
            shard_id=shard_id,
            num_shards=num_shards,
            intents=intents,
            bot=bot,
            replay_buffer=cfg.replay_buffer,
            now_mono=state.clock.monotonic(),
            identifies=state.sessions.count_identify(shard_id, num_shards),
            payload_compress=ident.compress,
            large_threshold=max(50, min(250, ident.large_threshold)),
        )
        session.traffic = ShardTraffic(
            state.pool, state.world, guilds, intents, shard_id, bot, state.ids, cfg.seed
        )
        record["session_id"] = session.session_id
        state.sessions.add(session)
        self._attach(session)
        world = state.world
        self.dispatch(
            "READY",
            world.ready(
                bot=bot,
                session_id=session.session_id,
                resume_gateway_url=state.resume_url,
                guilds=guilds,
                shard=ident.shard,
            ),
        )
        if intents & INTENT_BITS["GUILDS"]:
            for guild in guilds:
                if guild.unavailable:
                    self.dispatch("GUILD_DELETE", world.guild_unavailable(guild))
                else:
                    self.dispatch(
                        "GUILD_CREATE", world.guild_create(guild, bot, session.large_threshold)
                    )
        log.debug(
            "shard identified",
            extra=fields(shard=shard_id, shards=num_shards, session=session.session_id),
        )
        state.changed()

    async def _invalid_session_later(self, delay: float) -> None:
        await self.state.clock.sleep(delay)
        self.identify_pending = False
        self.send(INVALID_SESSION[False])

    def _attach(self, session: Session) -> None:
        self.session = session
        session.state = "active"
        session.connection_id = self.id
        session.disconnected_at = None
        if self.encoder is not None and self.encoder.mode == "none":
            self.encoder.payload_zlib = session.payload_compress
        self.traffic_credit = 0.0

    def _on_resume(self, resume: inbound.ResumeIn) -> None:
        state = self.state
        cfg = state.config
        if self.session is not None or self.identify_pending:
            self.close(CloseCode.ALREADY_AUTHENTICATED, b"Already authenticated.")
            return
        bot = state.authenticate(resume.token)
        if bot is None:
            self.close(CloseCode.AUTHENTICATION_FAILED, b"Authentication failed.")
            return
        session = state.sessions.get(resume.session_id)
        if session is None or session.state == "ended" or session.bot.id != bot.id:
            state.stats.resume_failures += 1
            if (
                session is not None
                and session.ended_reason == "expired"
                and cfg.expired_resume_close_code is not None
            ):
                self.close(cfg.expired_resume_close_code, b"Session timed out.")
            else:
                self.send(INVALID_SESSION[False])
            return
        if not self.on_resume_url:
            session.resumes_wrong_url += 1
            state.stats.resumes_wrong_url += 1
            if cfg.reject_resume_on_main_url:
                state.stats.resume_failures += 1
                self.send(INVALID_SESSION[False])
                return
        seq = resume.seq if resume.seq is not None else 0
        if seq < 0 or seq > session.seq:
            state.stats.resume_failures += 1
            self._take_over(session)
            self.close(CloseCode.INVALID_SEQ, b"Invalid seq.")
            return
        entries = session.replay_after(seq)
        if entries is None:
            state.stats.resume_failures += 1
            old = self._owner_of(session)
            session.end("replay_gap", by_server=True)
            if old is not None:
                old.session = None
                old.cut()
            self.send(INVALID_SESSION[False])
            return
        self._take_over(session)
        session.resumes += 1
        session.connections += 1
        session.replayed += len(entries)
        state.stats.resumes += 1
        self._attach(session)
        for entry_seq, payload in entries:
            self._queue.put_nowait((payload, entry_seq, session))
        self.dispatch("RESUMED", b'{"_trace":%s}' % TRACE)
        log.debug(
            "shard resumed",
            extra=fields(shard=session.shard_id, replayed=len(entries), seq=session.seq),
        )
        state.changed()

    def _owner_of(self, session: Session) -> LiveConnection | None:
        if session.connection_id is None or session.connection_id == self.id:
            return None
        return self.state.connections.get(session.connection_id)

    def _take_over(self, session: Session) -> None:
        """A resume while the old socket still looks alive (a zombie the client gave up
        on): detach the session from it and drop it, as Discord does."""
        old = self._owner_of(session)
        if old is not None:
            old.session = None
            old.cut()
        self.session = session
        session.connection_id = self.id

    def _answer(self, answers: list[tuple[str, bytes]]) -> None:
        for event, body in answers:
            self.dispatch(event, body)
        if answers:
            self.state.changed()

    # ------------------------------------------------------------------ heartbeat timeout

    async def _watchdog(self) -> None:
        cfg = self.state.config
        clock = self.state.clock
        limit = cfg.heartbeat_interval_s * 1.5 + cfg.heartbeat_timeout_slack
        while not self.closing:
            wait = self.last_heartbeat + limit - clock.monotonic()
            if wait <= 0:
                self.state.stats.heartbeat_timeouts += 1
                log.info("heartbeat timeout", extra=fields(conn=self.id))
                self.close(cfg.heartbeat_timeout_code, b"Heartbeat timeout.")
                return
            await clock.sleep(wait)


def reset_token(state: FakeState) -> None:
    """Session starts exhausted: Discord resets the token. Every session ends, every socket
    gets 4004, and the old token is refused everywhere until a new one is set."""
    state.token_reset = True
    state.stats.token_resets += 1
    log.warning("session start budget exhausted: token reset")
    for session in state.sessions.all:
        session.end("token_reset", by_server=True)
    for conn in list(state.connections.values()):
        conn.close(CloseCode.AUTHENTICATION_FAILED, b"Authentication failed.")
    state.changed()


async def handle_gateway(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    on_resume_url = request.path.rstrip("/").endswith("/resume")
    conn = Connection(state, request, on_resume_url)
    return await conn.run()
