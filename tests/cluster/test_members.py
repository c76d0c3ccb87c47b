"""``request_members(wait=True)``'s collector: chunks matched by our nonce, in index order,
whatever order they arrive in; a RATE_LIMITED answer is a clear error; the tap goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from workers.cluster import MembersArgs
from workers.events import Event
from workers.members import MembersRateLimited, MemberWaits

GUILD = "81384788765712384"


class FakeShard:
    shard_id = 0

    def __init__(self) -> None:
        self.tap: Callable[[Event], None] | None = None
        self.sent: list[dict[str, Any]] = []
        self.got = asyncio.Event()

    def set_tap(self, tap: Callable[[Event], None] | None) -> None:
        self.tap = tap

    async def send_raw(self, data: bytes) -> None:
        self.sent.append(msgspec.json.decode(data))
        self.got.set()

    def dispatch(self, name: str, d: dict[str, Any]) -> None:
        assert self.tap is not None
        self.tap(Event(0, 1, name, msgspec.Raw(msgspec.json.encode(d)), 0))


async def started(waits: MemberWaits, shard: FakeShard) -> tuple[asyncio.Future[Any], str]:
    args = MembersArgs(guild_id=GUILD, query="", limit=0)
    request = asyncio.ensure_future(waits.request(shard, args))  # type: ignore[arg-type]
    await shard.got.wait()
    [payload] = shard.sent
    assert payload["op"] == 8
    return request, payload["d"]["nonce"]


def chunk(nonce: str, index: int, count: int, members: list[int]) -> dict[str, Any]:
    return {
        "guild_id": GUILD,
        "nonce": nonce,
        "chunk_index": index,
        "chunk_count": count,
        "members": members,
    }


async def test_chunks_are_gathered_in_index_order_and_the_tap_removed() -> None:
    waits, shard = MemberWaits(), FakeShard()
    request, nonce = await started(waits, shard)
    shard.dispatch("GUILD_MEMBERS_CHUNK", chunk(nonce, 1, 2, [3, 4]))
    shard.dispatch("GUILD_MEMBERS_CHUNK", chunk("someone-else", 0, 1, [9]))
    assert not request.done()
    shard.dispatch("GUILD_MEMBERS_CHUNK", chunk(nonce, 0, 2, [1, 2]))
    result = await request
    assert result["members"] == [1, 2, 3, 4]
    assert shard.tap is None
    assert len(waits) == 0


async def test_a_rate_limited_answer_to_our_nonce_is_a_clear_error() -> None:
    waits, shard = MemberWaits(), FakeShard()
    request, nonce = await started(waits, shard)
    limited = {"opcode": 8, "retry_after": 12.5, "meta": {"guild_id": GUILD, "nonce": nonce}}
    shard.dispatch("RATE_LIMITED", limited)
    with pytest.raises(MembersRateLimited, match=r"retry in 12\.5 s"):
        await request
    assert shard.tap is None
