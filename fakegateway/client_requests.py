"""Answers to the client requests that have one: op 3 (presence, validated only), op 4
(voice state), op 8 (guild members, with the 30 s all-members rate limit), op 31
(soundboard sounds) and op 43 (channel info). Each returns the dispatches to send."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from fakegateway import inbound
from fakegateway.sessions import Session
from fakegateway.state import FakeState
from fakegateway.world import Guild, shard_for
from workers.protocol import INTENT_BITS, Op

_encoder: Final = msgspec.json.Encoder()
_PRESENCE_STATUSES: Final = frozenset({"online", "dnd", "idle", "invisible", "offline"})
Answers = list[tuple[str, bytes]]
ANSWERED_OPS: Final = frozenset(
    {
        Op.PRESENCE_UPDATE,
        Op.VOICE_STATE_UPDATE,
        Op.REQUEST_GUILD_MEMBERS,
        Op.REQUEST_SOUNDBOARD_SOUNDS,
        Op.REQUEST_CHANNEL_INFO,
    }
)


def answer(state: FakeState, session: Session | None, op: int, d: msgspec.Raw) -> Answers:
    """Decode and answer one request. Raises ``msgspec.ValidationError`` or ``ValueError``
    for a payload of the wrong shape (the caller closes with 4001)."""
    assert session is not None
    if op == Op.PRESENCE_UPDATE:
        presence = inbound.PRESENCE.decode(d)
        if presence.status not in _PRESENCE_STATUSES:
            raise ValueError(f"bad status {presence.status!r}")
        state.stats.presence_by_shard[str(session.shard_id)] = presence.status
        return []
    if op == Op.VOICE_STATE_UPDATE:
        return voice_state(state, session, inbound.VOICE_STATE.decode(d))
    if op == Op.REQUEST_GUILD_MEMBERS:
        return request_members(state, session, inbound.REQUEST_MEMBERS.decode(d))
    if op == Op.REQUEST_SOUNDBOARD_SOUNDS:
        return soundboard(state, session, inbound.GUILD_IDS.decode(d))
    if op == Op.REQUEST_CHANNEL_INFO:
        return channel_info(state, session, inbound.CHANNEL_INFO.decode(d))
    raise ValueError(f"op {op} has no answer")


def guild_on_shard(state: FakeState, session: Session, raw_id: str | int) -> Guild | None:
    """The guild if it exists and routes to this session's shard (else Discord ignores
    the request)."""
    guild = state.world.by_id.get(int(raw_id))
    if guild is None or shard_for(guild.id, session.num_shards) != session.shard_id:
        return None
    return guild


def voice_state(state: FakeState, session: Session, voice: inbound.VoiceStateIn) -> Answers:
    guild = guild_on_shard(state, session, voice.guild_id)
    if guild is None:
        return []
    channel = None if voice.channel_id is None else str(voice.channel_id)
    body = {
        "guild_id": str(guild.id),
        "channel_id": channel,
        "user_id": str(session.bot.id),
        "member": {
            "user": session.bot.payload(),
            "roles": [],
            "deaf": False,
            "mute": False,
            "joined_at": "2021-01-01T00:00:00.000000+00:00",
            "flags": 0,
        },
        "session_id": session.session_id,
        "deaf": False,
        "mute": False,
        "self_deaf": voice.self_deaf,
        "self_mute": voice.self_mute,
        "self_video": False,
        "suppress": False,
        "request_to_speak_timestamp": None,
    }
    out: Answers = [("VOICE_STATE_UPDATE", _encoder.encode(body))]
    if channel is not None:
        server = {
            "token": session.session_id[:16],
            "guild_id": str(guild.id),
            "endpoint": "127.0.0.1:9",
        }
        out.append(("VOICE_SERVER_UPDATE", _encoder.encode(server)))
    return out


def request_members(state: FakeState, session: Session, req: inbound.RequestMembersIn) -> Answers:
    if (req.query is None) == (req.user_ids is None):
        raise ValueError("exactly one of query and user_ids")
    if req.query is not None and req.limit is None:
        raise ValueError("limit is required with query")
    guild = guild_on_shard(state, session, req.guild_id)
    if guild is None:
        return []
    # An over-long nonce is dropped silently, as Discord does.
    nonce = req.nonce if req.nonce is not None and len(req.nonce.encode()) <= 32 else None
    if req.query == "" and req.limit == 0:
        now = state.clock.monotonic()
        last = state.member_requests.get(guild.id)
        window = state.config.request_members_window_s
        if last is not None and now - last < window:
            meta: dict[str, Any] = {"guild_id": str(guild.id)}
            if nonce is not None:
                meta["nonce"] = nonce
            body = {"opcode": 8, "retry_after": round(window - (now - last), 3), "meta": meta}
            return [("RATE_LIMITED", _encoder.encode(body))]
        state.member_requests[guild.id] = now
    user_ids: list[int] | None = None
    if req.user_ids is not None:
        ids = req.user_ids if isinstance(req.user_ids, list) else [req.user_ids]
        user_ids = [int(u) for u in ids]
    presences = req.presences and bool(session.intents & INTENT_BITS["GUILD_PRESENCES"])
    chunks = state.world.member_chunks(
        guild,
        session.bot,
        limit=req.limit or 0,
        query=req.query,
        user_ids=user_ids,
        nonce=nonce,
        presences=presences,
    )
    return [("GUILD_MEMBERS_CHUNK", body) for body in chunks]


def soundboard(state: FakeState, session: Session, req: inbound.GuildIdsIn) -> Answers:
    out: Answers = []
    for raw in req.guild_ids:
        guild = guild_on_shard(state, session, raw)
        if guild is not None:
            body = {"guild_id": str(guild.id), "soundboard_sounds": []}
            out.append(("SOUNDBOARD_SOUNDS", _encoder.encode(body)))
    return out


def channel_info(state: FakeState, session: Session, req: inbound.ChannelInfoIn) -> Answers:
    guild = guild_on_shard(state, session, req.guild_id)
    if guild is None:
        return []
    channels = [{"id": str(guild.voice_channel), "status": None, "voice_start_time": None}]
    body = {"guild_id": str(guild.id), "channels": channels}
    return [("CHANNEL_INFO", _encoder.encode(body))]
