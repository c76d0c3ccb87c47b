"""One owner per shard across hosts: a lease per shard in the identify limiter's Redis.

``{<prefix>:<bot id>}:owner:<shard>`` holds the id of the host that runs the shard, with a
TTL of ``lease_s``; the owner renews it every third of that while it runs. A host whose
slice overlaps a shard owned by another host does not start it: its identify waits (see
``OwnedLimiter``) until the owner's lease expires (the owner died, or stopped without
keeping its sessions and handed it back), and then takes it over. Each round also reads
every owner key of the bot, so each host can say which shards nobody runs.

Redis can lose owner keys (a restart from a snapshot, a failover, a flush): for one lease
after that is seen (``RestartWatch``), a host only re-asserts the shards it runs and takes
no new ones, so every live owner has had three renewals to claim its shards back first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Gauge
from redis.exceptions import RedisError

from shardmgr.config import Settings
from shardmgr.identify.limiter import BudgetWait, IdentifyLimiter, SessionStartLimit
from shardmgr.identify.redisconn import Outage, safe_url
from shardmgr.identify.redisrestart import Run, watched_client
from shardmgr.plan import Plan
from shardmgr.settingvalues import LimiterKind
from workers.clock import REAL_CLOCK, Clock
from workers.logsetup import fields

log = logging.getLogger(__name__)

# Owner keys read per MGET when looking for shards without an owner.
SCAN_CHUNK: Final = 1000
# Reply of the claim script for a key we now hold; '' is a free key we may not take yet.
MINE: Final = "="

# KEYS: the takeover fence, the owner keys of the shards we run, then those we want.
# ARGV: host id, lease ms, how many owner keys are ours.
# Replies: '1' if fenced, then per owner key '=' (ours now), '' (free, not taken: fenced)
# or the holder's id. A free key of ours is taken back even when fenced: we run it.
CLAIM_LUA: Final = """
local fenced = redis.call('EXISTS', KEYS[1])
local out = {tostring(fenced)}
for i = 2, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur == ARGV[1] or (not cur and (i - 1 <= tonumber(ARGV[3]) or fenced == 0)) then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
    out[i] = '='
  else
    out[i] = cur or ''
  end
end
return out
"""

# KEYS: the takeover fence. ARGV: lease ms. Set (or lengthened) when Redis may have lost
# owner keys; every host's claim then takes nothing new until it expires.
FENCE_LUA: Final = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], 'restart', 'PX', ARGV[1])
end
return 1
"""

# KEYS: owner keys. ARGV: host id. Deletes the ones that are still ours.
RELEASE_LUA: Final = """
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
"""


def default_host_id(state_dir: str) -> str:
    """Stable across restarts of this supervisor (so it takes its own shards back at once)
    and distinct for two supervisors on one machine (they need separate state dirs)."""
    return f"{socket.gethostname()}:{os.path.abspath(state_dir)}"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class ShardOwnership:
    """Claims, renews and hands back the leases of one host's shards.

    ``shard_ids``: the shards this host is planned to run. ``total_shards``: the bot's, for
    the scan of shards nobody owns."""

    def __init__(
        self,
        url: str,
        *,
        bot_id: str,
        host_id: str,
        shard_ids: Iterable[int],
        total_shards: int,
        lease_s: float,
        key_prefix: str = "shardmgr",
        clock: Clock = REAL_CLOCK,
        socket_timeout_s: float = 2.0,
    ) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self.url = safe_url(url)
        self.host_id = host_id
        self.lease_s = lease_s
        self.renew_every_s = lease_s / 3
        self._lease_ms = max(1, math.ceil(lease_s * 1000))
        self._prefix = f"{{{key_prefix}:{bot_id}}}:owner:"
        self._fence_key = f"{{{key_prefix}:{bot_id}}}:owner-fence"
        self._clock = clock
        self._watch, self._client = watched_client(
            url,
            what="ownership",
            young_s=lease_s,
            on_restart=self._restarted,
            reconnecting=lambda: not self._outage.available,
            socket_timeout_s=socket_timeout_s,
        )
        self._claim = self._client.register_script(CLAIM_LUA)
        self._release = self._client.register_script(RELEASE_LUA)
        self._outage = Outage(
            lost="cannot reach redis to renew shard ownership; shards keep running, "
            "unowned shards wait",
            still="still cannot reach redis to renew shard ownership",
            back="redis reachable again; shard ownership renewed",
            retry_base_s=min(0.1, self.renew_every_s),
            retry_cap_s=self.renew_every_s,
            clock=clock,
        )
        self.shard_ids = sorted(set(shard_ids))
        self.total_shards = total_shards
        self.owned: set[int] = set()
        self.elsewhere: dict[int, str] = {}
        self.unowned: list[int] = []
        self.taken_over = 0
        self.fenced = False
        self._events = {sid: asyncio.Event() for sid in self.shard_ids}
        # Who held each shard when we last saw it held elsewhere (for the takeover line).
        self._previous_owner: dict[int, str] = {}
        self._reported: dict[int, str] = {}
        self._task: asyncio.Task[None] | None = None
        # Whether the stop keeps the sessions (then our leases stay until they expire, and
        # this host's restart takes them back); asked when the limiter closes.
        self.keep_leases: Callable[[], bool] = lambda: False
        # Called with the shards this host ran whose lease another host holds now.
        self.on_lost: Callable[[list[int]], None] = lambda lost: None

    # ------------------------------------------------------------------ interface

    def owns(self, shard_id: int) -> bool:
        return shard_id in self.owned

    def may_resume(self, shard_id: int) -> bool:
        """Whether a saved session of this shard may be resumed here: RESUME takes no
        identify permit, so a shard another host took over must identify (and so wait)."""
        return shard_id not in self.elsewhere

    async def wait_owned(self, shard_id: int) -> None:
        """Returns once this host holds the shard's lease (at once for unplanned shards:
        the supervisor refuses those itself)."""
        event = self._events.get(shard_id)
        if event is not None:
            await event.wait()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shard-ownership")

    async def claim(self) -> None:
        """One round: renew ours, take free ones (unless fenced), see who owns the rest and
        which shards of the bot nobody owns. Raises RedisError when Redis does not answer."""
        mine = sorted(self.owned)
        wanted = [sid for sid in self.shard_ids if sid not in self.owned]
        reply = await self._claim(
            keys=[self._fence_key, *(self._key(sid) for sid in (*mine, *wanted))],
            args=[self.host_id, self._lease_ms, len(mine)],
        )
        lost: list[int] = []
        self.fenced = _text(reply[0]) == "1"
        for sid, raw in zip((*mine, *wanted), reply[1:], strict=True):
            holder = _text(raw)
            if holder == MINE:
                self.elsewhere.pop(sid, None)
                if sid not in self.owned:
                    self.owned.add(sid)
                    self._events[sid].set()
                    previous = self._previous_owner.pop(sid, None)
                    if previous is not None:
                        self.taken_over += 1
                        log.warning(
                            "took over a shard whose owner's lease expired",
                            extra=fields(shard=sid, previous_owner=previous),
                        )
            elif holder:
                if sid in self.owned:
                    # Our renewals did not land in time (a stall, a partition, a Redis that
                    # lost the key) and another host took the shard in the gap.
                    log.error(
                        "another host now owns a shard this host ran; restarting its worker "
                        "so that it runs on one host only",
                        extra=fields(shard=sid, owner=holder),
                    )
                    lost.append(sid)
                    self.owned.discard(sid)
                    self._events[sid] = asyncio.Event()
                self.elsewhere[sid] = holder
                self._previous_owner[sid] = holder
            else:
                self.elsewhere.pop(sid, None)
        if lost:
            self.on_lost(lost)
        await self._scan()
        self._report_elsewhere()

    async def aclose(self, *, hand_back: bool) -> None:
        """Stop renewing. ``hand_back``: delete our leases so another host may take the
        shards at once (the sessions ended); otherwise they expire after one lease, in
        which time a restart of this host takes them back."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            if hand_back and self.owned:
                await self._release(
                    keys=[self._key(sid) for sid in sorted(self.owned)], args=[self.host_id]
                )
        except RedisError as exc:
            log.warning(
                "could not hand back shard ownership; it expires on its own",
                extra=fields(error=str(exc), lease_s=self.lease_s),
            )
        finally:
            await self._client.aclose()

    def status(self) -> dict[str, Any]:
        return {
            "host_id": self.host_id,
            "lease_s": self.lease_s,
            "owned": sorted(self.owned),
            "not_owned": {str(sid): host for sid, host in sorted(self.elsewhere.items())},
            "unowned": list(self.unowned),
            "taken_over": self.taken_over,
            "redis_available": self._outage.available,
            "fenced": self.fenced,
        }

    # ------------------------------------------------------------------ internals

    def _key(self, shard_id: int) -> str:
        return f"{self._prefix}{shard_id}"

    async def _run(self) -> None:
        while True:
            try:
                await self.claim()
            except RedisError as exc:
                await self._clock.sleep(self._outage.failed(exc, redis=self.url))
                continue
            except Exception:
                # Our bug: renewals must go on, or every shard here moves to another host.
                log.exception("shard ownership round failed")
                await self._clock.sleep(self.renew_every_s)
                continue
            self._outage.succeeded(redis=self.url)
            await self._clock.sleep(self.renew_every_s)

    async def _restarted(self, run: Run, reason: str) -> None:
        # Written on the connection that saw the restart, before our claim runs on it: own
        # leases are re-asserted at once, new ones wait until every live owner has renewed
        # (three renewals fit in one lease).
        # A server that was merely young at our first look has had live owners renewing
        # since it started: they need only the rest of one lease.
        young = reason == "young"
        left_ms = self._lease_ms - (math.floor(self._watch.uptime_s * 1000) if young else 0)
        if left_ms <= 0:
            return
        await run("EVAL", FENCE_LUA, 1, self._fence_key, left_ms)
        log.info(
            "shard takeovers paused for one lease after a redis restart",
            extra=fields(reason=reason, lease_s=self.lease_s),
        )

    async def _scan(self) -> None:
        unowned: list[int] = []
        for first in range(0, self.total_shards, SCAN_CHUNK):
            ids = range(first, min(first + SCAN_CHUNK, self.total_shards))
            values = await self._client.mget([self._key(sid) for sid in ids])
            unowned.extend(sid for sid, v in zip(ids, values, strict=True) if v is None)
        if unowned != self.unowned and unowned:
            log.warning(
                "shards of this bot that no host owns",
                extra=fields(shards=_ranges(unowned), total_shards=self.total_shards),
            )
        self.unowned = unowned

    def _report_elsewhere(self) -> None:
        """One WARNING per change of who owns the shards this host may not start."""
        if self.elsewhere == self._reported:
            return
        self._reported = dict(self.elsewhere)
        by_host: dict[str, list[int]] = {}
        for sid, host in sorted(self.elsewhere.items()):
            by_host.setdefault(host, []).append(sid)
        for host, sids in by_host.items():
            log.warning(
                "shards of this host's slice are owned by another host; not starting them "
                "until its lease expires",
                extra=fields(shards=_ranges(sids), owner=host, lease_s=self.lease_s),
            )


def _ranges(ids: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``: bounded log lines for thousands of shards."""
    out: list[str] = []
    start = prev = None
    for sid in ids:
        if prev is not None and sid == prev + 1:
            prev = sid
            continue
        if start is not None:
            out.append(f"{start}-{prev}" if start != prev else str(start))
        start = prev = sid
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(out)


class OwnedLimiter:
    """An ``IdentifyLimiter`` that lets a shard identify only once this host owns it: the
    shard's connection waits at its identify permit, as it does for the budget, and the
    slot, the worker and its other shards run as usual. RESUME never asks, so sessions of
    shards owned elsewhere are dropped before any worker starts (``drop_foreign``)."""

    def __init__(self, inner: IdentifyLimiter, ownership: ShardOwnership) -> None:
        self.inner = inner
        self.ownership = ownership

    async def acquire(
        self, shard_id: int, *, reserve: int = 0, on_budget_wait: BudgetWait | None = None
    ) -> None:
        await self.ownership.wait_owned(shard_id)
        await self.inner.acquire(shard_id, reserve=reserve, on_budget_wait=on_budget_wait)

    async def sent(self, shard_id: int) -> None:
        await self.inner.sent(shard_id)

    async def release(self, shard_id: int) -> None:
        await self.inner.release(shard_id)

    def update(self, limits: SessionStartLimit) -> None:
        self.inner.update(limits)

    @property
    def queue_depth(self) -> int:
        # Shards waiting for their owner are not in the identify queue: they have no turn.
        return self.inner.queue_depth

    @property
    def remaining(self) -> int:
        return self.inner.remaining

    @property
    def available(self) -> bool:
        return self.inner.available

    async def aclose(self) -> None:
        # Called once the workers are gone: the shards no longer run here.
        try:
            await self.ownership.aclose(hand_back=not self.ownership.keep_leases())
        finally:
            await self.inner.aclose()


async def start_ownership(
    settings: Settings, token: str, plan: Plan, registry: CollectorRegistry
) -> ShardOwnership | None:
    """The ownership of this host's shards when a Redis limiter is shared (None with the
    local limiter: one host, nothing to share). Its first round runs before any worker
    starts, so the saved sessions of shards owned elsewhere are never resumed; if Redis
    does not answer yet, the shards wait at their identify until it does."""
    spec = settings.limiter
    if spec.kind is not LimiterKind.REDIS or spec.url is None:
        return None
    from shardmgr.identify.redis import bot_id_from_token

    ownership = ShardOwnership(
        spec.url,
        bot_id=bot_id_from_token(token),
        host_id=default_host_id(settings.state_dir),
        shard_ids=plan.shard_ids,
        total_shards=plan.total_shards,
        lease_s=settings.owner_lease_s,
    )
    Gauge(
        "shardmgr_shards_owned_elsewhere",
        "Shards of this host's slice that another host owns (not started here)",
        registry=registry,
    ).set_function(lambda: len(ownership.elsewhere))
    Gauge(
        "shardmgr_shards_without_owner",
        "Shards of the bot that no host owns (as seen by this host's last scan)",
        registry=registry,
    ).set_function(lambda: len(ownership.unowned))
    try:
        await ownership.claim()
    except RedisError as exc:
        log.warning(
            "cannot reach redis to claim shard ownership; shards wait at their identify",
            extra=fields(redis=ownership.url, error=str(exc)),
        )
    ownership.start()
    return ownership
