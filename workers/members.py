"""``request_members(..., wait=True)``: op 8 with a nonce of our own, and the
GUILD_MEMBERS_CHUNK replies carrying it gathered into one answer.

Chunks reach the worker that owns the guild's shard; a tap on that shard sees them (only
while a request waits, so the receive path pays nothing otherwise) and still delivers
them to the handler as usual."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from workers import commands
from workers.protocol import Op, encode

if TYPE_CHECKING:
    from workers.events import Event
    from workers.shard import Shard

CHUNK_EVENT: Final = "GUILD_MEMBERS_CHUNK"
# Discord's answer instead of chunks when all-member requests come too fast (op 8 only).
RATE_LIMITED_EVENT: Final = "RATE_LIMITED"


class MembersRateLimited(ValueError):
    """The gateway refused the member request: too many for this guild; retry later."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"member request rate limited by the gateway; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


# Member requests one worker waits for at once; more raise instead of growing.
MAX_WAITS: Final = 64


class MembersRequest(Protocol):
    guild_id: str
    query: str | None
    limit: int
    presences: bool
    user_ids: list[str | int] | str | None


class _ChunkHead(msgspec.Struct):
    nonce: str | None = None
    chunk_index: int = 0
    chunk_count: int = 1


class _Chunk(msgspec.Struct):
    members: list[Any] = []
    not_found: list[Any] = []
    presences: list[Any] = []


class _Meta(msgspec.Struct, frozen=True):
    nonce: str | None = None


class _RateLimited(msgspec.Struct):
    opcode: int = 0
    retry_after: float = 0.0
    meta: _Meta = _Meta()


_head = msgspec.json.Decoder(_ChunkHead)
_limited = msgspec.json.Decoder(_RateLimited)
_body = msgspec.json.Decoder(_Chunk)


class _Wait:
    def __init__(self, shard_id: int) -> None:
        self.shard_id = shard_id
        self.chunks: dict[int, _Chunk] = {}
        self.count: int | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class MemberWaits:
    """Pending member requests of this worker, by nonce."""

    def __init__(self) -> None:
        self._prefix = f"sm{os.getpid() % 100000}-"
        self._nonces = itertools.count(1)
        self._waits: dict[str, _Wait] = {}

    def __len__(self) -> int:
        return len(self._waits)

    async def request(self, shard: Shard, req: MembersRequest) -> dict[str, list[Any]]:
        """Send op 8 on ``shard`` and return ``{"members", "not_found", "presences"}``
        gathered from every chunk (the caller bounds the wait)."""
        if len(self._waits) >= MAX_WAITS:
            raise ValueError(f"more than {MAX_WAITS} member requests are waiting in this worker")
        nonce = f"{self._prefix}{next(self._nonces)}"
        payload = commands.request_guild_members(
            req.guild_id, req.query, req.limit, req.presences, req.user_ids, nonce
        )
        wait = _Wait(shard.shard_id)
        self._waits[nonce] = wait
        shard.set_tap(self.tap)
        try:
            await shard.send_raw(encode(Op.REQUEST_GUILD_MEMBERS, payload))
            await wait.done
        finally:
            del self._waits[nonce]
            if not any(w.shard_id == shard.shard_id for w in self._waits.values()):
                shard.set_tap(None)
        chunks = [wait.chunks[i] for i in sorted(wait.chunks)]
        return {
            "members": [m for c in chunks for m in c.members],
            "not_found": [m for c in chunks for m in c.not_found],
            "presences": [m for c in chunks for m in c.presences],
        }

    def tap(self, event: Event) -> None:
        if event.name == RATE_LIMITED_EVENT:
            self._rate_limited(bytes(event.raw))
            return
        if event.name != CHUNK_EVENT:
            return
        raw = bytes(event.raw)
        try:
            head = _head.decode(raw)
        except msgspec.DecodeError:
            return
        wait = self._waits.get(head.nonce or "")
        if wait is None or wait.done.done():
            return
        try:
            wait.chunks[head.chunk_index] = _body.decode(raw)
        except msgspec.DecodeError:
            return
        wait.count = max(1, head.chunk_count)
        if len(wait.chunks) >= wait.count:
            wait.done.set_result(None)

    def _rate_limited(self, raw: bytes) -> None:
        try:
            body = _limited.decode(raw)
        except msgspec.DecodeError:
            return
        wait = self._waits.get(body.meta.nonce or "")
        if body.opcode == Op.REQUEST_GUILD_MEMBERS and wait is not None and not wait.done.done():
            wait.done.set_exception(MembersRateLimited(body.retry_after))
