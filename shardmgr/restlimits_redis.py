"""The token's REST global limit shared by every host through Redis: the same sliding
window of grants as ``GlobalLedger``, kept in one sorted set and changed by one Lua script
(atomic, timed by Redis's own clock, so hosts' clocks never matter). Keys live under
``{shardmgr:<bot id>}:rest:*`` next to the identify limiter's.

A grant's tokens are good for ``LEASE_S`` from the moment the script was *called*, which is
no later than Redis granted them, so no host sends one outside the window Redis counted.
While Redis is unreachable no tokens are granted: requests wait, they never overshoot."""

from __future__ import annotations

import itertools
import os
import random
import secrets
import socket
from typing import Any, Final

from shardmgr.identify_redis import bot_id_from_token
from shardmgr.redisconn import Outage, connect, safe_url
from workers.clock import REAL_CLOCK, Clock
from workers.rest.buckets import GLOBAL_WINDOW_S

# KEYS[1]: sorted set of grants, member "<tokens>:<unique id>", score = grant time in µs.
# ARGV: limit, window µs, want, unique id. Returns {granted, µs until a token frees}.
_TAKE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do
  used = used + tonumber(string.match(entries[i], '^(%d+):'))
end
local free = tonumber(ARGV[1]) - used
if free <= 0 then
  return {0, tonumber(entries[2]) + window - now}
end
local n = math.min(free, tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], now, n .. ':' .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
return {n, 0}
"""


class RedisGlobal:
    """``GlobalSource`` for ``shardmgr.restlimits.RestBroker`` across hosts."""

    def __init__(
        self,
        url: str,
        limit: int,
        *,
        token: str | None = None,
        bot_id: str | None = None,
        key_prefix: str = "shardmgr",
        window_s: float = GLOBAL_WINDOW_S,
        clock: Clock = REAL_CLOCK,
        socket_timeout_s: float = 2.0,
        what: str = "--rest-limiter",
    ) -> None:
        if limit < 1:
            raise ValueError("the global limit must be at least 1 request per second")
        if bot_id is None:
            if token is None:
                raise ValueError("RedisGlobal needs bot_id or token")
            bot_id = bot_id_from_token(token)
        self.url = safe_url(url)
        self.limit = limit
        self._window_us = int(window_s * 1_000_000)
        self.key = f"{{{key_prefix}:{bot_id}}}:rest:global"
        self._clock = clock
        self._client: Any = connect(url, socket_timeout_s=socket_timeout_s, what=what)
        self._take = self._client.register_script(_TAKE_LUA)
        self._ids = itertools.count()
        # Members must be unique across every host and limiter, or ZADD would overwrite
        # another grant instead of adding one.
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._outage = Outage(
            lost="cannot reach redis for REST limits; REST requests wait until it is back",
            still="redis for REST limits still unavailable",
            back="redis for REST limits reachable again",
            retry_base_s=0.05,
            retry_cap_s=2.0,
            clock=clock,
        )

    async def take(self, want: int) -> tuple[int, float]:
        while True:
            called = self._clock.monotonic()
            grant_id = f"{self._holder}:{next(self._ids)}"
            try:
                granted, wait_us = await self._take(
                    keys=[self.key], args=[self.limit, self._window_us, max(1, want), grant_id]
                )
            except (TimeoutError, OSError, ConnectionError) as exc:
                await self._clock.sleep(self._outage.failed(exc))
                continue
            except Exception as exc:  # redis.exceptions.* without importing the extra here
                if type(exc).__module__.startswith("redis"):
                    await self._clock.sleep(self._outage.failed(exc))
                    continue
                raise
            self._outage.succeeded()
            if int(granted) > 0:
                return int(granted), called
            # Hosts waiting for the same instant would all call at once: spread them.
            await self._clock.sleep(int(wait_us) / 1_000_000 + random.uniform(0.0, 0.002))

    async def aclose(self) -> None:
        await self._client.aclose()
