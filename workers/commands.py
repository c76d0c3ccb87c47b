"""What a shard sends besides heartbeats: the outgoing command queue, and the builders of
every payload (Identify, Resume, op 3, 4 and 8) as protocol Structs.

Commands wait in the queue across reconnects until a connection is ready for them; the
queue is bounded so that a caller outrunning the gateway's send limit (or a shard that
cannot connect) never grows the worker without end."""

from __future__ import annotations

import asyncio
import math
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec

from workers import ipc
from workers.protocol import (
    MAX_CLIENT_PAYLOAD,
    SEND_LIMIT,
    SEND_WINDOW_S,
    Activity,
    Identify,
    IdentifyProperties,
    Op,
    PresenceUpdate,
    RequestGuildMembers,
    Resume,
    VoiceStateUpdate,
    encode,
    parse_presence_status,
)

# Commands a shard holds at most. At the gateway's 120 sends a minute this is over four
# minutes of sending: a caller further ahead than that is outrunning the gateway for
# good and must be told to slow down. At most 4 KB each, so about 2 MB per shard.
MAX_QUEUED_COMMANDS: Final = 500
# When the queue is full, one place frees up about every window / limit seconds once the
# connection is sending; whole seconds, as HTTP's Retry-After wants.
RETRY_AFTER_S: Final = max(1, math.ceil(SEND_WINDOW_S / SEND_LIMIT))


class ShardClosed(Exception):
    """A command could not be sent because the shard stopped for good."""


class QueueFull(Exception):
    """The shard holds ``MAX_QUEUED_COMMANDS`` unsent commands already."""

    def __init__(self, shard_id: int, retry_after_s: int) -> None:
        super().__init__(f"shard {shard_id}'s command queue is full; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class CommandQueue:
    """FIFO of encoded payloads, each with the future its sender awaits."""

    def __init__(self, shard_id: int, maxsize: int = MAX_QUEUED_COMMANDS) -> None:
        self.shard_id = shard_id
        self.maxsize = maxsize
        self._items: deque[tuple[bytes, asyncio.Future[None]]] = deque()
        self._added = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed: str | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, data: bytes) -> asyncio.Future[None]:
        """Queue ``data``; the future completes once it is written. Raises ``QueueFull``
        or ``ShardClosed``."""
        if self._closed is not None:
            raise ShardClosed(self._closed)
        if len(self._items) >= self.maxsize:
            raise QueueFull(self.shard_id, RETRY_AFTER_S)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append((data, future))
        self._added.set()
        if len(self._items) >= self.maxsize:
            self._room.clear()
        return future

    async def put(self, data: bytes) -> None:
        """Queue ``data`` once there is room, and wait until it is written."""
        while True:
            try:
                future = self.put_nowait(data)
            except QueueFull:
                await self._room.wait()
                continue
            await future
            return

    async def drain(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Send queued payloads in order, for ever; an error from ``send`` leaves the
        payload at the head for the next connection and propagates."""
        items = self._items
        while True:
            while items:
                data, future = items[0]
                if not future.cancelled():
                    await send(data)
                items.popleft()
                self._room.set()
                if not future.done():
                    future.set_result(None)
            self._added.clear()
            await self._added.wait()

    def close(self, reason: str) -> None:
        """The shard stopped for good: fail what is queued and refuse what comes."""
        self._closed = reason
        while self._items:
            _, future = self._items.popleft()
            if not future.done():
                future.set_exception(ShardClosed(reason))
        self._room.set()

    def wake(self) -> None:
        """A connection became ready: let ``drain`` look at the queue again."""
        self._added.set()


# ---------------------------------------------------------------- payload builders


def identify(config: ipc.WorkerConfig, shard_id: int) -> bytes:
    """The shard's IDENTIFY, encoded once: it never changes, and an over-size one is a
    configuration mistake (a huge presence or properties) to report at start, not a
    close 4002 loop later. Raises ``ValueError``."""
    props = config.identify_properties
    presence = msgspec.convert(config.presence, PresenceUpdate) if config.presence else None
    payload = Identify(
        token=config.token,
        properties=IdentifyProperties(
            os=props.get("os", sys.platform),
            browser=props.get("browser", "shardmgr"),
            device=props.get("device", "shardmgr"),
        ),
        intents=config.intents,
        compress=config.compress == "payload",
        large_threshold=config.large_threshold,
        shard=[shard_id, config.num_shards],
        presence=presence,
    )
    data = encode(Op.IDENTIFY, payload)
    if len(data) > MAX_CLIENT_PAYLOAD:
        raise ValueError(
            f"identify payload is {len(data)} bytes, above the gateway's "
            f"{MAX_CLIENT_PAYLOAD}: shorten the presence or identify_properties"
        )
    return data


def resume(token: str, session_id: str, seq: int) -> bytes:
    return encode(Op.RESUME, Resume(token=token, session_id=session_id, seq=seq))


def presence_update(
    status: str = "online",
    activities: list[dict[str, Any]] | None = None,
    since: int | None = None,
    afk: bool = False,
) -> PresenceUpdate:
    """Op 3. ``activities``: dicts with ``name``, ``type`` and optional ``url``/``state``.
    Raises ``ValueError`` for an unknown status or a malformed activity."""
    try:
        acts = msgspec.convert(activities or [], list[Activity])
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad activity: {exc}") from None
    return PresenceUpdate(
        since=since, activities=acts, status=parse_presence_status(status), afk=afk
    )


def voice_state_update(
    guild_id: str | int,
    channel_id: str | int | None,
    self_mute: bool = False,
    self_deaf: bool = False,
) -> VoiceStateUpdate:
    """Op 4; ``channel_id=None`` leaves the voice channel."""
    return VoiceStateUpdate(
        guild_id=str(guild_id),
        channel_id=None if channel_id is None else str(channel_id),
        self_mute=self_mute,
        self_deaf=self_deaf,
    )


def request_guild_members(
    guild_id: str | int,
    query: str | None = None,
    limit: int = 0,
    presences: bool = False,
    user_ids: list[str | int] | str | int | None = None,
    nonce: str | None = None,
) -> RequestGuildMembers:
    """Op 8: exactly one of ``query`` (with ``limit``) or ``user_ids``."""
    if (query is None) == (user_ids is None):
        raise ValueError("request_members needs exactly one of query or user_ids")
    if nonce is not None and len(nonce.encode()) > 32:
        raise ValueError("nonce must be at most 32 bytes")
    ids: str | list[str] | None
    if user_ids is None:
        ids = None
    elif isinstance(user_ids, list):
        ids = [str(u) for u in user_ids]
    else:
        ids = str(user_ids)
    return RequestGuildMembers(
        guild_id=str(guild_id),
        query=query,
        limit=limit if query is not None else None,
        presences=presences,
        user_ids=ids,
        nonce=nonce,
    )
