"""Discord gateway wire vocabulary (API v10): opcodes, close codes, payload Structs.

Shared by the worker's client and the fake gateway so both speak exactly one dialect.
Inbound envelopes keep ``d`` as ``msgspec.Raw`` so a dispatch body is parsed only when
somebody asks for it.
"""

from __future__ import annotations

import enum
from typing import Annotated, Final

import msgspec

API_VERSION: Final = 10
ZLIB_SUFFIX: Final = b"\x00\x00\xff\xff"
MAX_CLIENT_PAYLOAD: Final = 4096
SEND_LIMIT: Final = 120
SEND_WINDOW_S: Final = 60.0
MAX_GUILDS_PER_SHARD: Final = 2500
# Largest sequence number accepted from the wire (JSON's safe-integer range). A hostile or
# corrupt ``s`` beyond it would otherwise jump the shard's seq forward, after which every
# real event looks like an already-seen replay and is dropped.
MAX_SEQ: Final = 2**53 - 1

ALL_INTENTS: Final = 53608447
PRIVILEGED_INTENTS: Final = (1 << 1) | (1 << 8) | (1 << 15)

INTENT_BITS: Final[dict[str, int]] = {
    "GUILDS": 1 << 0,
    "GUILD_MEMBERS": 1 << 1,
    "GUILD_MODERATION": 1 << 2,
    "GUILD_BANS": 1 << 2,
    "GUILD_EXPRESSIONS": 1 << 3,
    "GUILD_EMOJIS_AND_STICKERS": 1 << 3,
    "GUILD_INTEGRATIONS": 1 << 4,
    "GUILD_WEBHOOKS": 1 << 5,
    "GUILD_INVITES": 1 << 6,
    "GUILD_VOICE_STATES": 1 << 7,
    "GUILD_PRESENCES": 1 << 8,
    "GUILD_MESSAGES": 1 << 9,
    "GUILD_MESSAGE_REACTIONS": 1 << 10,
    "GUILD_MESSAGE_TYPING": 1 << 11,
    "DIRECT_MESSAGES": 1 << 12,
    "DIRECT_MESSAGE_REACTIONS": 1 << 13,
    "DIRECT_MESSAGE_TYPING": 1 << 14,
    "MESSAGE_CONTENT": 1 << 15,
    "GUILD_SCHEDULED_EVENTS": 1 << 16,
    "AUTO_MODERATION_CONFIGURATION": 1 << 20,
    "AUTO_MODERATION_EXECUTION": 1 << 21,
    "GUILD_MESSAGE_POLLS": 1 << 24,
    "DIRECT_MESSAGE_POLLS": 1 << 25,
}


class Op(enum.IntEnum):
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11
    REQUEST_SOUNDBOARD_SOUNDS = 31
    REQUEST_CHANNEL_INFO = 43


CLIENT_OPS: Final = frozenset(
    {
        Op.HEARTBEAT,
        Op.IDENTIFY,
        Op.PRESENCE_UPDATE,
        Op.VOICE_STATE_UPDATE,
        Op.RESUME,
        Op.REQUEST_GUILD_MEMBERS,
        Op.REQUEST_SOUNDBOARD_SOUNDS,
        Op.REQUEST_CHANNEL_INFO,
    }
)


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    ABNORMAL = 1006
    INTERNAL_ERROR = 1011
    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    SHARDING_REQUIRED = 4011
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014


# A close we start ourselves in order to resume: any code but 1000/1001 keeps the session.
RESUMABLE_CLIENT_CLOSE: Final = 4000


# ---------------------------------------------------------------- inbound (server -> client)


class Envelope(msgspec.Struct, array_like=False, gc=False):
    """Every gateway message. ``d`` stays raw until someone needs it. Not tracked by the
    garbage collector (it holds only an int, strings and raw bytes): one is decoded per
    message on the receive path."""

    op: int
    d: msgspec.Raw = msgspec.Raw(b"null")
    s: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] | None = None
    t: str | None = None


class Hello(msgspec.Struct):
    # A zero or negative interval would make the heartbeat task spin (or never beat).
    heartbeat_interval: Annotated[int, msgspec.Meta(gt=0)]


class UnavailableGuild(msgspec.Struct, omit_defaults=True):
    id: str
    unavailable: bool = True


class User(msgspec.Struct, omit_defaults=True):
    id: str
    username: str = ""
    discriminator: str = "0"
    bot: bool = False
    global_name: str | None = None
    avatar: str | None = None


class PartialApplication(msgspec.Struct):
    id: str
    flags: int = 0


class Ready(msgspec.Struct, omit_defaults=True):
    v: int
    user: User
    guilds: list[UnavailableGuild]
    session_id: str
    resume_gateway_url: str
    application: PartialApplication | None = None
    shard: list[int] | None = None


class ReadySession(msgspec.Struct):
    """The part of READY a shard uses: decoding the whole of it (user, application) only
    adds ways for a valid session to be rejected. Guild entries are counted, not parsed."""

    session_id: str
    resume_gateway_url: str
    guilds: list[msgspec.Raw] = []
    # [shard_id, num_shards] as the server understood our IDENTIFY; absent on some servers
    shard: list[int] | None = None


class GuildId(msgspec.Struct):
    """The one field of a GUILD_CREATE a shard looks at (to check the server shards)."""

    id: str


class Resumed(msgspec.Struct):
    """RESUMED's body: undocumented, but always an object (unknown keys are ignored)."""


# ---------------------------------------------------------------- outbound (client -> server)


class IdentifyProperties(msgspec.Struct):
    os: str
    browser: str
    device: str


class PresenceStatus(enum.StrEnum):
    """The statuses a bot may set (op 3 and Identify's presence)."""

    ONLINE = "online"
    DND = "dnd"
    IDLE = "idle"
    INVISIBLE = "invisible"


def parse_presence_status(value: str) -> PresenceStatus:
    """Raises ``ValueError`` naming the allowed statuses."""
    try:
        return PresenceStatus(value)
    except ValueError:
        allowed = ", ".join(PresenceStatus)
        raise ValueError(f"status must be one of {allowed}, not {value!r}") from None


class Activity(msgspec.Struct):
    name: str
    # Always on the wire, even 0 (playing): Discord requires it.
    type: int = 0
    url: str | msgspec.UnsetType | None = msgspec.UNSET
    state: str | msgspec.UnsetType | None = msgspec.UNSET


class PresenceUpdate(msgspec.Struct):
    since: int | None
    activities: list[Activity]
    status: PresenceStatus
    afk: bool


class Identify(msgspec.Struct, omit_defaults=True):
    token: str
    properties: IdentifyProperties
    intents: int
    compress: bool = False
    large_threshold: int = 250
    shard: list[int] | None = None
    presence: PresenceUpdate | None = None


class Resume(msgspec.Struct):
    token: str
    session_id: str
    seq: int


class VoiceStateUpdate(msgspec.Struct):
    guild_id: str
    channel_id: str | None
    self_mute: bool = False
    self_deaf: bool = False


class RequestGuildMembers(msgspec.Struct, omit_defaults=True):
    guild_id: str
    query: str | None = None
    limit: int | None = None
    presences: bool = False
    user_ids: str | list[str] | None = None
    nonce: str | None = None


class Outbound(msgspec.Struct):
    """A client payload. ``d`` may be any encodable value (Struct, dict, int, None)."""

    op: int
    d: object


_encoder: Final = msgspec.json.Encoder()
_envelope_decoder: Final = msgspec.json.Decoder(Envelope)


def encode(op: int, d: object) -> bytes:
    return _encoder.encode(Outbound(op=op, d=d))


# The bare decoder, for the receive path (a Python call less per message). It raises
# ``ENVELOPE_ERRORS``: msgspec parses a Raw body's structure too, so hostile nesting
# (thousands of "[") raises RecursionError, which must be a bad payload like any other.
decode_envelope_raw: Final = _envelope_decoder.decode
ENVELOPE_ERRORS: Final = (msgspec.DecodeError, RecursionError)


def decode_envelope(data: bytes | bytearray | memoryview | str) -> Envelope:
    """Decode a gateway message's envelope; raises ``msgspec.DecodeError`` (or
    ``msgspec.ValidationError``, a subclass) on anything that is not one."""
    try:
        return _envelope_decoder.decode(data)
    except RecursionError:
        raise msgspec.DecodeError("JSON nested too deeply") from None


def parse_intents(value: str | int) -> int:
    """``"GUILDS,GUILD_MESSAGES"``, ``"default"``, ``"all"`` or an integer, to a bit mask.

    Raises ``ValueError`` with a message naming the bad part.
    """
    if isinstance(value, int):
        mask = value
    else:
        text = value.strip()
        if text.lstrip("-").isdigit():
            mask = int(text)
        else:
            mask = 0
            for raw in text.replace("|", ",").split(","):
                name = raw.strip().upper()
                if not name:
                    continue
                if name == "ALL":
                    mask |= ALL_INTENTS
                elif name == "DEFAULT":
                    mask |= ALL_INTENTS & ~PRIVILEGED_INTENTS
                elif name in INTENT_BITS:
                    mask |= INTENT_BITS[name]
                else:
                    raise ValueError(f"unknown intent {raw.strip()!r}")
    if mask < 0 or mask & ~ALL_INTENTS:
        raise ValueError(f"intents {mask} has bits that are not documented intents")
    return mask
