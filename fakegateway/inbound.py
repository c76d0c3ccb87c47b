"""What clients send the fake gateway: lenient shapes of the client payloads (the server
validates what Discord validates and ignores the rest, unlike the client-side Structs in
workers/protocol.py), and the pure Identify checks that decide its close code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec

from fakegateway.config import FakeConfig
from workers.protocol import ALL_INTENTS, PRIVILEGED_INTENTS, CloseCode


class IdentifyIn(msgspec.Struct):
    token: str
    properties: dict[str, Any]
    intents: int | None = None
    compress: bool = False
    large_threshold: int = 50
    shard: list[int] | None = None
    presence: dict[str, Any] | None = None


class ResumeIn(msgspec.Struct):
    token: str
    session_id: str
    seq: int | None


class PresenceIn(msgspec.Struct):
    since: int | None
    activities: list[dict[str, Any]]
    status: str
    afk: bool


class VoiceStateIn(msgspec.Struct):
    guild_id: str | int
    channel_id: str | int | None
    self_mute: bool = False
    self_deaf: bool = False


class RequestMembersIn(msgspec.Struct):
    guild_id: str | int
    query: str | None = None
    limit: int | None = None
    presences: bool = False
    user_ids: str | int | list[str | int] | None = None
    nonce: str | None = None


class GuildIdsIn(msgspec.Struct):
    guild_ids: list[str | int]


class ChannelInfoIn(msgspec.Struct):
    guild_id: str | int
    fields: list[str] = msgspec.field(default_factory=list)


IDENTIFY: Final = msgspec.json.Decoder(IdentifyIn)
RESUME: Final = msgspec.json.Decoder(ResumeIn)
PRESENCE: Final = msgspec.json.Decoder(PresenceIn)
VOICE_STATE: Final = msgspec.json.Decoder(VoiceStateIn)
REQUEST_MEMBERS: Final = msgspec.json.Decoder(RequestMembersIn)
GUILD_IDS: Final = msgspec.json.Decoder(GuildIdsIn)
CHANNEL_INFO: Final = msgspec.json.Decoder(ChannelInfoIn)

Rejection = tuple[int, bytes]


def shard_pair(ident: IdentifyIn) -> tuple[int, int]:
    """``[shard_id, num_shards]``; no ``shard`` means ``[0, 1]``. A malformed array gives a
    pair that ``check_identify`` rejects with 4010."""
    if ident.shard is None:
        return 0, 1
    if len(ident.shard) != 2:
        return -1, 0
    return ident.shard[0], ident.shard[1]


def check_identify(
    ident: IdentifyIn,
    *,
    authenticated: bool,
    config: FakeConfig,
    guild_count: Callable[[], int],
    max_guilds_per_shard: int | None = None,
) -> Rejection | None:
    """The close code (and reason) Discord answers this Identify with, or None if it may
    go on to the concurrency and budget checks. Checked in Discord's order: token, shard,
    intents, then the guild count."""
    if not authenticated:
        return CloseCode.AUTHENTICATION_FAILED, b"Authentication failed."
    shard_id, num_shards = shard_pair(ident)
    multiple = config.large_bot_multiple
    if (
        num_shards < 1
        or not 0 <= shard_id < num_shards
        or (multiple is not None and num_shards % multiple != 0)
    ):
        return CloseCode.INVALID_SHARD, b"Invalid shard."
    intents = ident.intents
    # v8+ requires intents; a missing field is treated like an invalid one.
    if intents is None or intents < 0 or intents & ~ALL_INTENTS:
        return CloseCode.INVALID_INTENTS, b"Invalid intent(s)."
    if intents & PRIVILEGED_INTENTS & ~config.privileged_intents:
        return CloseCode.DISALLOWED_INTENTS, b"Disallowed intent(s)."
    limit = config.max_guilds_per_shard if max_guilds_per_shard is None else max_guilds_per_shard
    if guild_count() > limit:
        return CloseCode.SHARDING_REQUIRED, b"Sharding required."
    return None
