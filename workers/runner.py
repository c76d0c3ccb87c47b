"""The shard's I/O: connect, read, send, close, reconnect; stop, suspend and kill; the test
hooks. It performs what the shard's state machine (``workers.shard``) and the pure rules of
``workers.decisions`` decide, and owns every task and socket of the connection: each is
cancelled or closed when the connection ends, on every path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, Literal

import aiohttp
from yarl import URL

from workers import commands, decisions
from workers.codec import query_value
from workers.decisions import Action, Next, Reason, StopKind
from workers.heartbeat import Heartbeater
from workers.ipc import ShardState
from workers.permits import PermitRefused
from workers.protocol import API_VERSION, RESUMABLE_CLIENT_CLOSE, CloseCode, Op, encode

if TYPE_CHECKING:
    from workers.shard import Shard

log = logging.getLogger(__name__)

_TEXT: Final = aiohttp.WSMsgType.TEXT
_BINARY: Final = aiohttp.WSMsgType.BINARY
_CLOSE: Final = aiohttp.WSMsgType.CLOSE
# Text frames arrive as bytes (``decode_text=False``): msgspec decodes bytes directly.
_WebSocket = aiohttp.ClientWebSocketResponse[Literal[False]]
# aiohttp raises ClientConnectionResetError (a ClientError and an OSError) for a write to a
# closing socket. RuntimeError is deliberately absent: it would hide our own bugs.
_NETWORK_ERRORS: Final = (aiohttp.ClientError, OSError)
_CANCELLED: Final = Action(Next.STOP, Reason.NETWORK, send_close=RESUMABLE_CLIENT_CLOSE)


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


class Runner:
    """Runs one shard's connections, one at a time, until it stops."""

    def __init__(self, shard: Shard, http: aiohttp.ClientSession | None) -> None:
        self.shard = shard
        self._http = http
        self.ws: _WebSocket | None = None
        self.action: Action | None = None
        self._action_event = asyncio.Event()
        self._ready_event = asyncio.Event()
        # Live tasks only: a finished one leaves at once, so a flood of short tasks
        # never grows the set.
        self._tasks: set[asyncio.Task[None]] = set()
        self._closer: asyncio.Task[None] | None = None
        # The beat the server asked for (op 1) and not yet sent: at most one, so that a
        # flood of op 1 costs nothing but the frames.
        self._requested_beat: asyncio.Task[None] | None = None
        self._connect: asyncio.Task[_WebSocket] | None = None
        self._stop: StopKind | None = None
        self._stop_event = asyncio.Event()
        self._done = asyncio.Event()
        self.running = False

    @property
    def stopping(self) -> bool:
        return self._stop is not None

    # ------------------------------------------------------------------ connection

    def reset(self) -> None:
        self.action = None
        self._action_event.clear()
        self._ready_event.clear()
        self._closer = None
        self._requested_beat = None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task owned by this connection: cancelled and awaited when it ends."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start_handshake(self, heartbeater: Heartbeater) -> None:
        """HELLO arrived: beat, and RESUME or IDENTIFY."""
        if self.ws is None:
            return  # driven without a socket (benchmarks): no I/O to start
        self.spawn(heartbeater.run())
        self.spawn(self._resume() if self.shard.has_session else self._identify())

    def connection_ready(self) -> None:
        self._ready_event.set()
        self.shard.commands.wake()

    def request_beat(self) -> None:
        """Op 1: beat now, unless a requested beat is still waiting to go out."""
        if self.shard.heartbeater is None or self.ws is None:
            return
        pending = self._requested_beat
        if pending is not None and not pending.done():
            return
        self._requested_beat = self.spawn(self.beat(requested=True))

    def end(self, action: Action, kill: bool = False, override: bool = False) -> None:
        """End the current connection for ``action``; the first reason wins, except that
        ``override`` (a stop/suspend/kill request) replaces a reason whose close frame has
        not gone out yet, and a kill always drops the socket at once."""
        if self.action is not None:
            ws = self.ws
            if kill and ws is not None:
                _abort(ws)
            if override and self._closer is None:
                self.action = action
            return
        self.action = action
        self._action_event.set()
        ws = self.ws
        if ws is not None and self._closer is None:
            self._closer = asyncio.get_running_loop().create_task(self._close_ws(ws, action, kill))

    async def _close_ws(self, ws: _WebSocket, action: Action, kill: bool) -> None:
        if kill:
            _abort(ws)
            return
        code = action.send_close if action.send_close is not None else RESUMABLE_CLIENT_CLOSE
        timeout = self.shard.config.close_timeout_s
        heartbeater = self.shard.heartbeater
        if action.reason is Reason.ZOMBIE and heartbeater is not None:
            # The peer is presumed dead: do not wait long for its close reply.
            timeout = min(timeout, heartbeater.interval_s / 2)
        try:
            await asyncio.wait_for(ws.close(code=code), timeout)
        except (TimeoutError, *_NETWORK_ERRORS):
            _abort(ws)

    async def _open(self, http: aiohttp.ClientSession, url: str) -> _WebSocket:
        config = self.shard.config
        async with asyncio.timeout(config.hello_timeout_s):
            return await http.ws_connect(
                url,
                autoclose=False,
                autoping=True,
                # No cap in aiohttp: an over-size frame there closes the socket itself
                # (1009) and bypasses the bad-payload rules. The cap is enforced after
                # inflation, in the inflater and ``feed_text``.
                max_msg_size=0,
                decode_text=False,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=config.close_timeout_s),
            )

    async def _connect_once(self, http: aiohttp.ClientSession) -> Action:
        shard = self.shard
        shard.new_connection()
        session = shard.session
        base, resume = session.connect_base(shard.config.gateway_url)
        url = gateway_url(base, shard.config.compress)
        shard.set_state(ShardState.CONNECTING)
        # A task of its own, so that a stop cancels a connect that never completes.
        connecting = self._connect = asyncio.get_running_loop().create_task(self._open(http, url))
        try:
            ws = await asyncio.shield(connecting)
        except asyncio.CancelledError:
            if not connecting.cancelled():
                # This task itself is cancelled: the connect goes with it, and a socket
                # it opened meanwhile is dropped, not leaked.
                connecting.cancel()
                (opened,) = await asyncio.gather(connecting, return_exceptions=True)
                if isinstance(opened, aiohttp.ClientWebSocketResponse):
                    _abort(opened)
                raise
            return self.action or _CANCELLED
        except TimeoutError:
            session.connect_failed(resume)
            return decisions.decide_timeout(resume, "websocket connect timed out")
        except _NETWORK_ERRORS as exc:
            session.connect_failed(resume)
            return decisions.decide_network(resume, f"connect: {exc}")
        finally:
            self._connect = None
        session.connect_succeeded()
        self.ws = ws
        if self._stop is not None:
            # stop()/suspend() arrived while connecting.
            self.end(decisions.decide_stop(self._stop))
        self.spawn(self._send_commands())
        try:
            await self._read(ws)
        finally:
            for task in self._tasks:
                task.cancel()
            closer = self._closer
            if closer is None and not ws.closed:
                closer = asyncio.get_running_loop().create_task(
                    self._close_ws(ws, self.action or _CANCELLED, False)
                )
            pending = [*self._tasks, *([closer] if closer else [])]
            self._tasks.clear()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            self.ws = None
            shard.heartbeater = None
            shard.identify_seen()
        return self.action or decisions.decide_network(shard.has_session, "connection lost")

    async def _read(self, ws: _WebSocket) -> None:
        shard = self.shard
        clock = shard.clock
        delivery = shard.delivery
        while self.action is None:
            timeout: float | None = None
            if shard.deadline is not None:
                timeout = shard.deadline - clock.monotonic()
                if timeout <= 0:
                    self.end(self._timeout_action())
                    return
            try:
                msg = await ws.receive(timeout)
            except TimeoutError:
                self.end(self._timeout_action())
                return
            kind = msg.type
            if kind is _BINARY:
                shard.feed(msg.data)
            elif kind is _TEXT:
                data = msg.data
                shard.feed_text(data if isinstance(data, bytes) else data.encode())
            elif kind is _CLOSE:
                code = msg.data if isinstance(msg.data, int) else None
                shard.server_closed(code, msg.extra)
                return
            else:
                if self.action is None:
                    if kind is aiohttp.WSMsgType.ERROR:
                        shard.bad_payload("bad_frame", f"{msg.data}")
                    else:
                        self.end(decisions.decide_network(shard.has_session, "connection lost"))
                return
            if delivery.hold and self.action is None:
                await self.give_handler_a_turn()

    async def give_handler_a_turn(self) -> None:
        """The backlog asked the reader to hold (``Delivery.hold``): yield once so the
        handler task runs, or, when the backlog is full, wait until it has room."""
        delivery = self.shard.delivery
        delivery.hold = False
        if not delivery.full:
            await asyncio.sleep(0)
            return
        await self.wait_for_room()

    async def wait_for_room(self) -> None:
        """The handler is behind: stop reading (the backlog stays bounded, nothing is
        dropped) while heartbeats keep flowing from their own task."""
        shard = self.shard
        shard.monitor.paused = True
        paused_at = shard.clock.monotonic()
        room = asyncio.ensure_future(shard.delivery.wait_room())
        ended = asyncio.ensure_future(self._action_event.wait())
        try:
            await asyncio.wait((room, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.cancel()
            ended.cancel()
            if shard.deadline is not None:
                # Time spent not reading says nothing about a slow READY/RESUMED.
                shard.deadline += shard.clock.monotonic() - paused_at
            shard.monitor.paused = False
            shard.monitor.received_since_beat = True

    def _timeout_action(self) -> Action:
        waiting_for = "HELLO" if self.shard.heartbeater is None else "READY/RESUMED"
        return decisions.decide_timeout(self.shard.has_session, f"no {waiting_for} in time")

    # ------------------------------------------------------------------ sending

    async def _send_now(self, data: bytes, priority: bool) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            raise ConnectionResetError("not connected")
        await self.shard.limiter.acquire(priority)
        await ws.send_frame(data, _TEXT)

    async def beat(self, requested: bool = False) -> None:
        # Bound to this connection's socket, monitor and limiter for the whole send.
        shard = self.shard
        ws = self.ws
        monitor = shard.monitor
        limiter = shard.limiter
        try:
            if ws is None or ws.closed:
                return
            await limiter.acquire(True)
            if ws is not self.ws:
                return
            # Marked before the write so an ACK racing the write is still matched.
            if requested:
                monitor.on_requested_sent()
            else:
                monitor.on_sent()
            await ws.send_frame(encode(Op.HEARTBEAT, shard.session.seq or None), _TEXT)
        except _NETWORK_ERRORS as exc:
            self.end(decisions.decide_network(shard.has_session, f"heartbeat send: {exc}"))

    async def _identify(self) -> None:
        shard = self.shard
        shard.set_state(ShardState.WAITING_PERMIT)
        try:
            await shard.permits.acquire(shard.shard_id)
        except PermitRefused as exc:
            self.end(decisions.decide_permit_refused(str(exc)))
            return
        shard.set_state(ShardState.IDENTIFYING)
        shard.deadline = shard.clock.monotonic() + shard.config.ready_timeout_s
        shard.identifies += 1
        shard.counters.identifies += 1
        # Once the write may have begun the grant is spent; only a socket already gone
        # gives it back unused. When the bucket's next window may start is settled later,
        # by ``Shard.identify_seen``.
        ws = self.ws
        may_leave = ws is not None and not ws.closed
        # Set before the write: the answer may be read while this task waits on a drain.
        shard.identify_unseen = may_leave
        try:
            await self._send_now(shard.identify_payload, priority=True)
        except _NETWORK_ERRORS as exc:
            self.end(decisions.decide_network(False, f"identify send: {exc}"))
        finally:
            if not may_leave:
                shard.permits.release(shard.shard_id)

    async def _resume(self) -> None:
        shard = self.shard
        session = shard.session
        assert session.session_id is not None
        shard.set_state(ShardState.RESUMING)
        if session.take_skip():
            shard.counters.skipped += 1
        payload = commands.resume(shard.config.token, session.session_id, session.seq)
        shard.deadline = shard.clock.monotonic() + shard.config.ready_timeout_s
        shard.resumes += 1
        shard.counters.resumes += 1
        try:
            await self._send_now(payload, priority=True)
        except _NETWORK_ERRORS as exc:
            self.end(decisions.decide_network(True, f"resume send: {exc}"))

    async def _send_commands(self) -> None:
        """Drains the command queue through the limiter, only on a ready connection."""
        await self._ready_event.wait()
        try:
            await self.shard.commands.drain(self._send_command)
        except _NETWORK_ERRORS as exc:
            # Left at the head of the queue for the next connection.
            self.end(decisions.decide_network(self.shard.has_session, f"send: {exc}"))

    async def _send_command(self, data: bytes) -> None:
        await self._send_now(data, priority=False)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Connect, reconnect and resume until stopped or a fatal close. Owned by the
        runtime's task; cancelling it closes the connection with a session-keeping code
        (use ``stop()`` to end the session, ``kill()`` to drop without a close frame)."""
        shard = self.shard
        self.running = True
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
                        "unexpected error on shard connection", extra={"shard": shard.shard_id}
                    )
                    action = decisions.decide_network(shard.has_session, f"unexpected: {exc!r}")
                if self._stop is not None:
                    break
                if action.next is Next.STOP:
                    self._fatal(action)
                    return
                # An IDENTIFY action has already dropped the session where it was decided
                # (op 9, close code, inject_reconnect).
                backoff_s = shard.backoff.next_delay(quick=decisions.is_quick_reconnect(action))
                delay = decisions.decide_reconnect_delay(action, backoff_s, shard.rng.random())
                resume = action.next is Next.RESUME
                shard.set_state(ShardState.RECONNECTING)
                shard.reporter.reconnecting(
                    shard.shard_id, action.reason, action.close_code, resume, delay
                )
                log.info(
                    "shard reconnecting",
                    extra={
                        "shard": shard.shard_id,
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
            shard.set_state(ShardState.STOPPED)
            shard.commands.close(f"shard {shard.shard_id} stopped")
            if own_http:
                await http.close()
            self._done.set()

    async def _sleep_unless_stopped(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self.shard.clock.sleep(delay))
        stopped = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait((sleeper, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopped.cancel()

    def _fatal(self, action: Action) -> None:
        shard = self.shard
        reason = action.detail or f"close code {action.close_code}"
        log.error(
            "shard stopped for good",
            extra={"shard": shard.shard_id, "code": action.close_code, "reason": reason},
        )
        shard.reporter.stopped(shard.shard_id, reason, action.close_code, True, None)

    async def _finish_stop(self) -> None:
        """After a requested stop/suspend/kill: let queued events reach the handler (the
        checkpoint then covers them), then report."""
        shard = self.shard
        kind = self._stop or StopKind.STOP
        try:
            async with asyncio.timeout(shard.config.drain_timeout_s):
                await shard.delivery.wait_idle()
        except TimeoutError:
            log.warning(
                "handler backlog not drained before close; it will be replayed",
                extra={"shard": shard.shard_id, "backlog": shard.delivery.backlog},
            )
        session = None if kind is StopKind.STOP else shard.checkpoint_session()
        if kind is StopKind.STOP:
            shard.session.drop()
        shard.reporter.stopped(shard.shard_id, kind.value, None, False, session)

    def _request_stop(self, kind: StopKind) -> None:
        if self._stop is None:
            self._stop = kind
        self._stop_event.set()
        connecting = self._connect
        if connecting is not None:
            connecting.cancel()
        self.end(decisions.decide_stop(self._stop), kill=kind is StopKind.KILL, override=True)

    async def _wait_done(self) -> None:
        if self.running:
            await self._done.wait()
        else:
            self.shard.set_state(ShardState.STOPPED)

    async def stop(self) -> None:
        self._request_stop(StopKind.STOP)
        await self._wait_done()

    async def suspend(self) -> None:
        self._request_stop(StopKind.SUSPEND)
        await self._wait_done()

    def kill(self) -> None:
        self._request_stop(StopKind.KILL)

    # ------------------------------------------------------------------ test hooks

    def inject_error(self, exc: BaseException) -> None:
        """Treat ``exc`` as a failure of the current connection: close it (keeping the
        session) and reconnect."""
        shard = self.shard
        log.warning("injected error", extra={"shard": shard.shard_id, "error": repr(exc)})
        self.end(decisions.decide_network(shard.has_session, f"injected: {exc!r}"))

    def inject_reconnect(self, resume: bool = True) -> None:
        """Reconnect as if the gateway sent op 7; ``resume=False`` drops the session first
        (close 1000) so the shard identifies afresh."""
        if resume:
            self.end(decisions.decide_reconnect_request(self.shard.has_session))
            return
        self.shard.session.drop()
        self.end(Action(Next.IDENTIFY, Reason.OP7, send_close=CloseCode.NORMAL))

    def inject_resume(self, seq: int | None = None) -> None:
        """Reconnect and RESUME from ``seq`` (default: the last received), so that the
        gateway replays everything after it."""
        if seq is not None:
            self.shard.session.seq = seq
        self.end(decisions.decide_reconnect_request(self.shard.has_session))


def _abort(ws: _WebSocket) -> None:
    """Drop the connection without a close frame (aiohttp has no public abort)."""
    response = ws._response
    response.close()
