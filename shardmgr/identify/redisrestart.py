"""Telling when Redis restarted or failed over, from its ``run_id``.

A Redis restarted from an AOF/RDB snapshot, or a replica promoted while it lagged, keeps
older keys (the limiter's epoch among them) but has lost whatever was written after the
snapshot: an identify lease, a shard owner's renewal. The data cannot tell; ``run_id``
(``INFO server``) can: it changes with every server process. ``RestartWatch.on_connect`` is
handed to redis-py as the connection's ``redis_connect_func``, so every new connection, a
reconnect after a restart included, is checked before any command of ours runs on it, and
``on_restart`` can repair the state (fence) on that same connection first. Checks outside a
connect (``observe``, from a periodic ``INFO``) catch a failover behind a proxy that keeps
the client's connection open.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from workers.logsetup import fields

log = logging.getLogger(__name__)

# What INFO looks like when ACLs deny it: no run_id, which counts as a restart.
UNKNOWN: Final = ""

Run = Callable[..., Awaitable[Any]]
"""Runs one raw command (``run("EVAL", script, ...)``) and returns its reply."""

OnRestart = Callable[[Run, str], Awaitable[None]]
"""Called with a way to run commands on the connection that saw the change and why
(``restarted``, ``young``, ``unknown``, ``reconnected``), before that connection runs
anything else."""


def parse_info(raw: bytes | str | Mapping[str, Any]) -> tuple[str, float]:
    """``(run_id, uptime_in_seconds)`` from an ``INFO server`` reply (raw text or parsed)."""
    if isinstance(raw, Mapping):
        return str(raw.get("run_id", UNKNOWN)), float(raw.get("uptime_in_seconds", 0))
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    run_id, uptime = UNKNOWN, 0.0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "run_id":
            run_id = value.strip()
        elif key == "uptime_in_seconds":
            uptime = float(value.strip() or 0)
    return run_id, uptime


def restart_reason(
    known: str | None, run_id: str, uptime_s: float, young_s: float, reconnect: bool
) -> str | None:
    """Why the state in Redis may have lost recent writes, or None when it cannot have.

    ``known``: the run_id seen before (None on the first connection). ``young_s``: a server
    younger than this may have restarted while we were not looking. ``reconnect``: this
    connection replaces one that failed."""
    if run_id == UNKNOWN:
        return "unknown"
    if known is not None and run_id != known:
        return "restarted"
    if known is None and uptime_s < young_s:
        return "young"
    if reconnect:
        return "reconnected"
    return None


class RestartWatch:
    """Remembers the Redis ``run_id`` and reports every change.

    ``young_s``: on the first connection, a server up for less than this counts as
    restarted (it may have forgotten a lease given just before). ``reconnecting()`` says
    whether a new connection replaces a failed one (the caller's outage state): after an
    outage nobody knows what Redis lost, so that counts as well.
    """

    def __init__(
        self,
        *,
        what: str,
        young_s: float,
        on_restart: OnRestart | None = None,
        reconnecting: Callable[[], bool] = lambda: False,
    ) -> None:
        self._what = what
        self._young_s = young_s
        self._on_restart = on_restart
        self._reconnecting = reconnecting
        self.run_id: str | None = None
        # The server's uptime at the last look (a young server is fenced only until it
        # is as old as the fence would be).
        self.uptime_s = 0.0
        self.restarts = 0

    async def on_connect(self, conn: Any) -> None:
        """redis-py's ``redis_connect_func``: the usual handshake, then the run_id check."""
        await conn.on_connect()
        await conn.send_command("INFO", "server")
        try:
            reply = await conn.read_response()
        except Exception as exc:
            # ACLs may deny INFO: we cannot tell a restart apart, so assume one.
            if "NOPERM" not in str(exc) and "denied" not in str(exc).lower():
                raise
            reply = b""

        async def run(*args: Any) -> Any:
            await conn.send_command(*args)
            return await conn.read_response()

        await self.observe(reply, run)

    async def observe(self, info: bytes | str | Mapping[str, Any], run: Run) -> str | None:
        """Compare one INFO reply with what we knew; when Redis may have lost data, runs
        ``on_restart`` with ``run`` (commands on the connection the reply came from).
        Returns the reason."""
        run_id, uptime = parse_info(info)
        reason = restart_reason(self.run_id, run_id, uptime, self._young_s, self._reconnecting())
        first = self.run_id is None
        self.run_id = run_id
        self.uptime_s = uptime
        if reason is None:
            return None
        if reason != "reconnected" and not (first and reason == "young"):
            self.restarts += 1
            log.warning(
                "redis restarted or failed over; it may have lost recent writes",
                extra=fields(user=self._what, reason=reason, uptime_s=round(uptime, 1)),
            )
        if self._on_restart is not None:
            await self._on_restart(run, reason)
        return reason


def watched_client(
    url: str,
    *,
    what: str,
    young_s: float,
    on_restart: OnRestart,
    reconnecting: Callable[[], bool],
    socket_timeout_s: float,
) -> tuple[RestartWatch, Any]:
    """A client for the ``--identify-limiter`` URL whose every new connection is checked for a
    restart first (``what`` names the user in the log line)."""
    from shardmgr.identify.redisconn import connect

    watch = RestartWatch(
        what=what, young_s=young_s, on_restart=on_restart, reconnecting=reconnecting
    )
    client = connect(
        url,
        socket_timeout_s=socket_timeout_s,
        what="--identify-limiter",
        on_connect=watch.on_connect,
    )
    return watch, client
