"""The one server-side step of the redis-stream sink: append a batch, atomically, unless it is
already there or the stream has no room that nobody still needs.

A Lua script, so the three decisions and the write are one atomic step with one round trip:

1. **Already written?** Each shard has one batch in flight at a time; the script records the
   id of the last batch it wrote for each shard in one hash (``<stream>:sink:batches``, one
   field per shard: bounded, no TTL). A batch re-sent after a lost reply finds its own id
   there and is not written again: a constant-cost lookup, whatever the outage did.
2. **Room?** Only when the stream would grow past ``maxlen``: entries every consumer group
   has acknowledged are trimmed (``XTRIM MINID`` below each group's oldest pending entry, or
   past its last-delivered id when nothing is pending). Nothing a group has not acknowledged
   is ever trimmed. If that frees too little, the batch is refused (backpressure) and the
   refusal is recorded in ``<stream>:sink:full`` (short TTL) for the supervisor's monitor.
   A stream without consumer groups is trimmed to about ``maxlen`` as before (plain XREAD
   readers are not tracked: create the group before starting). An empty stream always
   takes a batch, so a batch larger than ``maxlen`` cannot wedge the writer.
3. **Write** every entry with ``XADD *`` and record the batch id.

Redis 7.0's commands only (``XTRIM MINID`` is 6.2+; Redis 8.2's acknowledged-only ``XADD``
trimming would do step 2 natively, but 7.x is what operators run today).
"""

from __future__ import annotations

import enum
from typing import Any, Final

import msgspec

# How long a refusal stays visible to the monitor after the last refused try.
FULL_MARK_MS: Final = 10_000

SCRIPT: Final = """
local stream, marks, full = KEYS[1], KEYS[2], KEYS[3]
local shard, batch_id = ARGV[1], ARGV[2]
local maxlen, width = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('HGET', marks, shard) == batch_id then
  return {0, 0, ''}
end
local n = (#ARGV - 5) / width

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
-- The first id no group still needs, and the group that holds it; nil without groups.
local function floor()
  local best, holder = nil, ''
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    local f
    if tonumber(info['pending']) > 0 then
      f = redis.call('XPENDING', stream, info['name'])[2]
    else
      local ms, seq = parse(info['last-delivered-id'])
      f = string.format('%d-%d', ms, seq + 1)
    end
    if best == nil or less(f, best) then best, holder = f, info['name'] end
  end
  return best, holder
end

local trim_after = false
if maxlen > 0 then
  local length = redis.call('XLEN', stream)
  if length > 0 and length + n > maxlen then
    local first, holder = floor()
    if first == nil then
      trim_after = true
    else
      redis.call('XTRIM', stream, 'MINID', first)
      length = redis.call('XLEN', stream)
      if length > 0 and length + n > maxlen then
        redis.call('SET', full, holder, 'PX', ARGV[#ARGV])
        return {2, length, holder}
      end
    end
  end
end
for i = 5, 4 + n * width, width do
  redis.call('XADD', stream, '*', unpack(ARGV, i, i + width - 1))
end
redis.call('HSET', marks, shard, batch_id)
if trim_after then
  redis.call('XTRIM', stream, 'MAXLEN', '~', maxlen)
end
if redis.call('EXISTS', full) == 1 then
  redis.call('DEL', full)
end
return {1, n, ''}
"""


class Outcome(enum.Enum):
    DUPLICATE = 0  # this batch id was already written: a retry after a lost reply
    WRITTEN = 1
    FULL = 2  # refused: the groups have not acknowledged enough to make room


class Result(msgspec.Struct, frozen=True):
    outcome: Outcome
    # WRITTEN: entries written; FULL: the stream's length after trimming
    count: int
    # FULL: the consumer group holding the oldest unacknowledged entry
    group: str


def keys(stream: str) -> list[str]:
    return [stream, f"{stream}:sink:batches", full_key(stream)]


def full_key(stream: str) -> str:
    return f"{stream}:sink:full"


def args(
    shard: int, batch_id: str, maxlen: int, entries: list[list[bytes]]
) -> list[bytes | str | int]:
    """The script's ARGV: shard, batch id, maxlen, fields per entry, the entries' field/value
    pairs flattened, then the refusal mark's TTL."""
    width = len(entries[0]) if entries else 0
    out: list[bytes | str | int] = [shard, batch_id, maxlen, width]
    for fields in entries:
        out.extend(fields)
    out.append(FULL_MARK_MS)
    return out


def result(reply: Any) -> Result:
    code, count, group = reply
    name = group.decode() if isinstance(group, bytes) else str(group)
    return Result(Outcome(int(code)), int(count), name)
