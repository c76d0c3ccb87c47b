"""The Lua scripts of the Redis identify limiter and their reply codes. Each script runs
atomically on the server; every key it touches shares one hash tag (see ``redis.py``)."""

from __future__ import annotations

from typing import Final

# Replies of the acquire script.
GRANTED: Final = 1
BUSY: Final = 0
EXHAUSTED: Final = -1
NEED_BUDGET: Final = -2
EPOCH_CHANGED: Final = -3

# A lease whose value starts with this is a grant whose IDENTIFY has not been reported sent.
HELD_PREFIX: Final = "hold:"

# KEYS: epoch, budget, bucket, grants.
# ARGV: epoch, holder, hold_ms, reserve, shard, bucket, grant log length.
# Busy: {0, 1 if the lease still waits for its send, its TTL}.
ACQUIRE_LUA: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {-3}
end
local budget = redis.call('GET', KEYS[2])
if not budget then
  return {-2}
end
budget = tonumber(budget)
if budget < tonumber(ARGV[4]) + 1 then
  return {-1, budget, redis.call('PTTL', KEYS[2])}
end
if not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then
  local cur = redis.call('GET', KEYS[3])
  local held = 0
  if cur and string.sub(cur, 1, 5) == 'hold:' then held = 1 end
  return {0, held, redis.call('PTTL', KEYS[3])}
end
local left = redis.call('DECR', KEYS[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*',
  'shard', ARGV[5], 'bucket', ARGV[6], 'holder', ARGV[2], 'remaining', left)
return {1, left, redis.call('PTTL', KEYS[2])}
"""

# KEYS: epoch, budget, bucket 0..n-1.
# ARGV: known epoch ('' if none), new epoch, remaining, reset_ms, window_ms, fence-if-created.
# Creates the epoch if missing, fences every bucket for one window when data was lost, and
# seeds the budget or lowers it to a fresher, smaller number (never raises it: a higher
# figure may be stale, a lower one is always safe).
SYNC_LUA: Final = """
local cur = redis.call('GET', KEYS[1])
local fenced = 0
if not cur then
  redis.call('SET', KEYS[1], ARGV[2])
  cur = ARGV[2]
  if ARGV[1] ~= '' or ARGV[6] == '1' then fenced = 1 end
elseif ARGV[1] ~= '' and cur ~= ARGV[1] then
  fenced = 1
end
if fenced == 1 then
  for i = 3, #KEYS do
    redis.call('SET', KEYS[i], 'fence', 'NX', 'PX', ARGV[5])
  end
end
local remaining = tonumber(ARGV[3])
local have = redis.call('GET', KEYS[2])
if not have then
  redis.call('SET', KEYS[2], remaining, 'PX', ARGV[4])
elseif remaining < tonumber(have) then
  redis.call('SET', KEYS[2], remaining, 'KEEPTTL')
end
return {cur, fenced, tonumber(redis.call('GET', KEYS[2])), redis.call('PTTL', KEYS[2])}
"""

# KEYS: bucket 0..n-1. ARGV: lease_ms. Redis may have lost a lease given just before (it
# restarted from a snapshot, failed over to a lagging replica, or we could not see it for a
# while): every bucket stays closed for at least one lease from now. A live lease keeps its
# holder and is only ever lengthened.
FENCE_LUA: Final = """
for i = 1, #KEYS do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl == -2 then
    redis.call('SET', KEYS[i], 'fence', 'PX', ARGV[1])
  elseif ttl >= 0 and ttl < tonumber(ARGV[1]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  end
end
return #KEYS
"""

# KEYS: bucket, budget. ARGV: holder. Hands back a grant nobody used (the waiter was
# cancelled while the script ran): frees the bucket and refunds the session start.
REFUND_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('INCR', KEYS[2])
  end
  return 1
end
return 0
"""


# KEYS: bucket. ARGV: holder ('' if our hold already timed out), lease_ms. The IDENTIFY went
# out now: the bucket stays closed for one lease from now. Another holder's lease is never
# shortened, only lengthened.
SENT_LUA: Final = """
local cur = redis.call('GET', KEYS[1])
if not cur or cur == ARGV[1] then
  redis.call('SET', KEYS[1], 'sent', 'PX', ARGV[2])
  return 1
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: bucket. ARGV: holder, ms left of one lease counted from the grant. The grant will not
# be used: the bucket opens when a lease from the grant ends, as if it had been used at once.
RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], 'released', 'PX', ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""
