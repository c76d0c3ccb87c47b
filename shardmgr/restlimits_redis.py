"""The token's REST limits shared by every host through Redis. Keys live under
``{shardmgr:<bot id>}:rest:*`` next to the identify limiter's; every change is one Lua
script (atomic, timed by Redis's own clock, so hosts' clocks never matter).

Global limit: the same sliding window of grants as ``GlobalLedger``, in one sorted set.

Rate-limit keys (a channel, guild, webhook): one host at a time holds a key (``own:<key>``,
a lease renewed while held) and lends it to its workers; a host that wants it adds itself
to ``want:<key>``, the holder sees that when it renews, takes the key back from its worker
after the request in flight, and releases it with its buckets' state (``state:<key>``,
aged by Redis's clock when the next host picks it up).

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

import msgspec

from shardmgr.identify.redis import bot_id_from_token
from shardmgr.identify.redisconn import Outage, connect, safe_url
from shardmgr.restlimits import age_state
from workers import ipc
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


# KEYS: own, state, want. ARGV: host, lease ms, want ms.
# Returns {1, state age µs or -1, state} when held, else {0, ms the holder still has, ''}.
_ACQUIRE_LUA: Final = """
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SREM', KEYS[3], ARGV[1])
  local st = redis.call('HMGET', KEYS[2], 'at', 's')
  if not st[1] then return {1, -1, ''} end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return {1, now - tonumber(st[1]), st[2]}
end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {0, redis.call('PTTL', KEYS[1]), ''}
"""

# KEYS: own 1..n, then want 1..n. ARGV: host, lease ms, n.
# Returns {indexes wanted by another host, indexes no longer ours}.
_RENEW_LUA: Final = """
local n = tonumber(ARGV[3])
local wanted, lost = {}, {}
for i = 1, n do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    if redis.call('SCARD', KEYS[n + i]) > 0 then table.insert(wanted, i) end
  else
    table.insert(lost, i)
  end
end
return {wanted, lost}
"""

# KEYS: own, state. ARGV: host, state ('' = unknown), state ttl ms.
_RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[2])
else
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[2], 'at', tonumber(t[1]) * 1000000 + tonumber(t[2]), 's', ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('DEL', KEYS[1])
return 1
"""

# A host holds a key this long without renewing (renewed every RENEW_S); a host that
# waits asks again every POLL_S.
KEY_LEASE_S: Final = 3.0
RENEW_S: Final = 0.05
POLL_S: Final = 0.02
WANT_TTL_S: Final = 1.0
STATE_TTL_S: Final = 60.0
_state_decoder: Final = msgspec.msgpack.Decoder(ipc.RestKeyState)


class RedisRest:
    """``GlobalSource`` and ``KeySource`` of ``shardmgr.restlimits.RestBroker`` across
    hosts."""

    renew_interval_s = RENEW_S

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
                raise ValueError("RedisRest needs bot_id or token")
            bot_id = bot_id_from_token(token)
        self.url = safe_url(url)
        self.limit = limit
        self._window_us = int(window_s * 1_000_000)
        self.namespace = f"{{{key_prefix}:{bot_id}}}:rest"
        self.key = f"{self.namespace}:global"
        self._clock = clock
        self._client: Any = connect(url, socket_timeout_s=socket_timeout_s, what=what)
        self._take = self._client.register_script(_TAKE_LUA)
        self._acquire = self._client.register_script(_ACQUIRE_LUA)
        self._renew = self._client.register_script(_RENEW_LUA)
        self._release = self._client.register_script(_RELEASE_LUA)
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

    def _keys(self, key: str) -> tuple[str, str, str]:
        return (
            f"{self.namespace}:own:{key}",
            f"{self.namespace}:state:{key}",
            f"{self.namespace}:want:{key}",
        )

    async def acquire(self, key: str) -> tuple[bool, ipc.RestKeyState | None, float]:
        own, state_key, want = self._keys(key)
        held, age_or_ttl, payload = await self._acquire(
            keys=[own, state_key, want],
            args=[self._holder, _ms(KEY_LEASE_S), _ms(WANT_TTL_S)],
        )
        if not int(held):
            return False, None, POLL_S + random.uniform(0.0, POLL_S / 4)
        if int(age_or_ttl) < 0 or not payload:
            return True, None, 0.0
        try:
            state = _state_decoder.decode(payload)
        except msgspec.DecodeError:
            return True, None, 0.0
        return True, age_state(state, int(age_or_ttl) / 1_000_000), 0.0

    async def renew(self, keys: list[str]) -> tuple[list[str], list[str]]:
        if not keys:
            return [], []
        names = [self._keys(k) for k in keys]
        wanted, lost = await self._renew(
            keys=[n[0] for n in names] + [n[2] for n in names],
            args=[self._holder, _ms(KEY_LEASE_S), len(keys)],
        )
        return [keys[int(i) - 1] for i in wanted], [keys[int(i) - 1] for i in lost]

    async def release(self, key: str, state: ipc.RestKeyState | None) -> None:
        own, state_key, _ = self._keys(key)
        payload = msgspec.msgpack.encode(state) if state is not None else b""
        await self._release(keys=[own, state_key], args=[self._holder, payload, _ms(STATE_TTL_S)])

    async def aclose(self) -> None:
        await self._client.aclose()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
