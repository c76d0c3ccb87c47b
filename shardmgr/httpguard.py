"""Admission control for the admin HTTP port: a bounded number of connections, a deadline for
clients that send nothing or half a request, file descriptors kept in reserve for the workers,
and rate-limited logs of what was refused.

The port is the supervisor's liveness probe and its operators' door; neither may be shut by a
client that opens connections and sends nothing (slowloris), and no number of such clients may
take the descriptors a worker restart needs (socketpair, pipes, the process itself)."""

from __future__ import annotations

import array
import asyncio
import collections
import fcntl
import logging
import os
import resource
import termios
import time
from collections.abc import Callable
from typing import Any, Final

from shardmgr.logthrottle import LogThrottle

log = logging.getLogger(__name__)

# Probes, Prometheus and an operator's CLI need a handful of connections; 256 leaves room for
# many scrapers and dashboards while bounding what a misbehaving client can hold (each costs
# a descriptor and an aiohttp handler, about 10 KB).
MAX_CONNECTIONS: Final = 256
# Descriptors always left free for the rest of the supervisor: a worker (re)start takes about
# four (socketpair, stderr pipe, pidfd), a Redis reconnect one, a state file save two; 128 is
# a whole restart wave of 32 workers at once.
FD_RESERVE: Final = 128
# A request line and headers (or the next request on a keep-alive connection) must arrive
# within this; real clients send them at once. Short enough that idle connections cannot
# pile up, long enough for a scrape over a slow link.
IDLE_TIMEOUT_S: Final = 5.0
# A POST body must arrive within this (bodies are at most 64 KiB).
BODY_TIMEOUT_S: Final = 5.0
# A burst of connects must not fill the kernel's accept queue and drop a probe's SYN (the
# kernel caps this at net.core.somaxconn, 4096 by default).
BACKLOG: Final = 4096
# asyncio accepts up to its ``backlog`` connections per loop turn before it reads from any
# socket; a small batch lets a probe's request be read before a flood of newer connections
# can push it out.
ACCEPT_BATCH: Final = 32
# How often the descriptors held outside this port are re-counted.
FD_RECOUNT_S: Final = 0.5
_ACCEPT_ERROR: Final = "socket.accept() out of system resource"


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus listdir's own
    except OSError:
        return 0


def fd_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def _pending_bytes(transport: asyncio.BaseTransport) -> int:
    """Bytes the kernel holds for us on this socket and the loop has not read yet."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    except OSError:
        return 0
    return buf[0]


class _Conn:
    __slots__ = ("busy", "deadline", "transport")

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.deadline: asyncio.TimerHandle | None = None
        self.busy = 0  # requests inside a handler right now


class ConnectionGuard:
    """Admits, times out and evicts connections. At the cap (or near the descriptor limit)
    a new connection evicts the oldest one that is not inside a request: a flood of idle
    connections then cannot lock out a probe, which sends its request at once."""

    def __init__(
        self,
        *,
        max_connections: int = MAX_CONNECTIONS,
        fd_reserve: int = FD_RESERVE,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        fd_recount_s: float = FD_RECOUNT_S,
        count_fds: Callable[[], int] = open_fds,
        limit_fds: Callable[[], int] = fd_limit,
    ) -> None:
        self.max_connections = max_connections
        self.fd_reserve = fd_reserve
        self.idle_timeout_s = idle_timeout_s
        self.fd_recount_s = fd_recount_s
        self._count_fds = count_fds
        self._limit_fds = limit_fds
        self._conns: collections.OrderedDict[asyncio.BaseTransport, _Conn] = (
            collections.OrderedDict()
        )
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self._throttle = LogThrottle(log)
        # Descriptors held by everything but this port, re-counted now and then: counting
        # on every accept would slow the accept loop down just when a flood arrives.
        self._other_fds = 0
        self._counted_at = -fd_recount_s

    def __len__(self) -> int:
        return len(self._conns)

    def _crowded(self) -> bool:
        if len(self._conns) >= self.max_connections:
            return True
        now = time.monotonic()
        if now - self._counted_at >= self.fd_recount_s:
            self._counted_at = now
            # The new connection's socket is open but not yet in _conns.
            self._other_fds = max(0, self._count_fds() - len(self._conns) - 1)
        return self._other_fds + len(self._conns) + 1 >= self._limit_fds() - self.fd_reserve

    def _victim(self) -> _Conn | None:
        """The oldest connection outside a request whose client has sent nothing we have
        not read yet: a probe whose request is still in the socket buffer is spared."""
        for conn in self._conns.values():
            if not conn.busy and not _pending_bytes(conn.transport):
                return conn
        return None

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        if self._crowded():
            victim = self._victim()
            if victim is None:
                self.refused += 1
                self._throttle.warning(
                    "admin port full: refusing a connection",
                    connections=len(self._conns),
                    refused=self.refused,
                )
                return False
            self.evicted += 1
            self._throttle.warning(
                "admin port full: closing the oldest idle connection",
                connections=len(self._conns),
                evicted=self.evicted,
            )
            self._drop(victim)
        conn = self._conns[transport] = _Conn(transport)
        self._arm(conn)
        return True

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        conn = self._conns.get(transport) if transport is not None else None
        if conn is not None:
            conn.busy += 1
            if conn.deadline is not None:
                conn.deadline.cancel()
                conn.deadline = None

    def request_finished(self, transport: asyncio.BaseTransport | None) -> None:
        conn = self._conns.get(transport) if transport is not None else None
        if conn is not None:
            conn.busy -= 1
            if not conn.busy:
                # Also bounds a client that never reads its response.
                self._arm(conn)

    def release(self, transport: asyncio.BaseTransport) -> None:
        conn = self._conns.pop(transport, None)
        if conn is not None and conn.deadline is not None:
            conn.deadline.cancel()

    def close_all(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn)

    def _arm(self, conn: _Conn) -> None:
        if conn.deadline is not None:
            conn.deadline.cancel()
        loop = asyncio.get_running_loop()
        conn.deadline = loop.call_later(self.idle_timeout_s, self._expire, conn)

    def _expire(self, conn: _Conn) -> None:
        conn.deadline = None
        if conn.busy or conn.transport not in self._conns:
            return
        self.timed_out += 1
        self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        self.release(conn.transport)
        conn.transport.abort()  # type: ignore[attr-defined]

    def protocol(self, inner: Callable[[], asyncio.BaseProtocol]) -> GuardedProtocol:
        return GuardedProtocol(self, inner)

    def handle_loop_exception(
        self,
        previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None,
    ) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
        """A loop exception handler that rate-limits accept errors (the loop logs one per
        failed accept, with a traceback) and passes everything else on."""

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if context.get("message") == _ACCEPT_ERROR:
                exc = context.get("exception")
                self._throttle.warning(
                    "admin port cannot accept: out of descriptors or memory",
                    error=str(exc) if exc else None,
                )
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        return handler


class GuardedProtocol(asyncio.Protocol):
    """Asks the guard before the HTTP handler is even created; a refused connection costs
    one accept and one close."""

    def __init__(self, guard: ConnectionGuard, inner: Callable[[], asyncio.BaseProtocol]) -> None:
        self._guard = guard
        self._make_inner = inner
        self._inner: Any = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit(transport):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._transport = transport
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            result: bool | None = self._inner.eof_received()
            return result
        return None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._guard.release(self._transport)
        if self._inner is not None:
            self._inner.connection_lost(exc)
