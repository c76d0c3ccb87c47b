"""Live dispatch traffic: a seeded pool of realistic event bodies per type, and a mix that
picks among them per shard according to the session's intents.

Bodies are encoded once at start as byte templates with holes for the ids that depend on
the shard (guild, channel, a fresh snowflake, the bot's application id); a dispatch is then
a handful of byte concatenations instead of encoding a big dict per event.
"""

from __future__ import annotations

import random
import re
from typing import Any, Final

import msgspec

from fakegateway.world import FakeUser, Guild, SnowflakeSource, World
from workers.protocol import INTENT_BITS

_encoder: Final = msgspec.json.Encoder()

SLOT_GUILD: Final = 0
SLOT_CHANNEL: Final = 1
SLOT_ID: Final = 2
SLOT_APP: Final = 3
_SLOT_NAMES: Final = {
    b"GUILD": SLOT_GUILD,
    b"CHANNEL": SLOT_CHANNEL,
    b"ID": SLOT_ID,
    b"APP": SLOT_APP,
}
_HOLE: Final = re.compile(rb'"@@(GUILD|CHANNEL|ID|APP)@@"')
G: Final = "@@GUILD@@"
C: Final = "@@CHANNEL@@"
ID: Final = "@@ID@@"
APP: Final = "@@APP@@"

VARIANTS_PER_TYPE: Final = 16

_WORDS: Final = (
    "the",
    "bot",
    "shard",
    "is",
    "online",
    "again",
    "lol",
    "anyone",
    "here",
    "play",
    "tonight",
    "check",
    "this",
    "out",
    "nice",
    "gg",
    "server",
    "update",
    "when",
    "deploy",
    "works",
    "fine",
    "thanks",
    "please",
    "help",
    "with",
    "my",
    "code",
    "error",
    "python",
    "rust",
    "music",
)
_EMOJI: Final = ("👍", "😂", "❤️", "🔥", "🎉", "👀", "✅", "🙏")
_STATUSES: Final = ("online", "online", "online", "idle", "dnd", "offline")
_GAMES: Final = ("Minecraft", "Valorant", "Visual Studio Code", "Spotify", "Elden Ring", "osu!")


class Template:
    """One pre-encoded event body with holes; ``render`` fills them."""

    __slots__ = ("dm", "name", "parts", "slots")

    def __init__(self, name: str, body: dict[str, Any], dm: bool = False) -> None:
        raw = _encoder.encode(body)
        pieces = _HOLE.split(raw)
        # re.split with one group alternates text, slot name, text, ...
        self.parts: tuple[bytes, ...] = tuple(pieces[0::2])
        self.slots: tuple[int, ...] = tuple(_SLOT_NAMES[p] for p in pieces[1::2])
        self.name = name
        self.dm = dm

    def render(self, guild_id: bytes, channel_id: bytes, ids: SnowflakeSource, app: bytes) -> bytes:
        parts = self.parts
        out = [parts[0]]
        for i, slot in enumerate(self.slots):
            if slot == SLOT_GUILD:
                out.append(guild_id)
            elif slot == SLOT_CHANNEL:
                out.append(channel_id)
            elif slot == SLOT_ID:
                out.append(b'"%d"' % ids.next())
            else:
                out.append(app)
            out.append(parts[i + 1])
        return b"".join(out)


# (event, weight, intent bit required (0: always sent), dm)
_MIX: Final[tuple[tuple[str, int, int, bool], ...]] = (
    ("PRESENCE_UPDATE", 30, INTENT_BITS["GUILD_PRESENCES"], False),
    ("MESSAGE_CREATE", 20, INTENT_BITS["GUILD_MESSAGES"], False),
    ("TYPING_START", 12, INTENT_BITS["GUILD_MESSAGE_TYPING"], False),
    ("GUILD_MEMBER_UPDATE", 8, INTENT_BITS["GUILD_MEMBERS"], False),
    ("MESSAGE_REACTION_ADD", 8, INTENT_BITS["GUILD_MESSAGE_REACTIONS"], False),
    ("MESSAGE_REACTION_REMOVE", 2, INTENT_BITS["GUILD_MESSAGE_REACTIONS"], False),
    ("MESSAGE_UPDATE", 4, INTENT_BITS["GUILD_MESSAGES"], False),
    ("MESSAGE_DELETE", 2, INTENT_BITS["GUILD_MESSAGES"], False),
    ("VOICE_STATE_UPDATE", 3, INTENT_BITS["GUILD_VOICE_STATES"], False),
    ("INTERACTION_CREATE", 2, 0, False),
    ("GUILD_MEMBER_ADD", 1, INTENT_BITS["GUILD_MEMBERS"], False),
    ("CHANNEL_UPDATE", 1, INTENT_BITS["GUILDS"], False),
    ("MESSAGE_CREATE", 2, INTENT_BITS["DIRECT_MESSAGES"], True),
    ("TYPING_START", 1, INTENT_BITS["DIRECT_MESSAGE_TYPING"], True),
)
MESSAGE_CONTENT: Final = INTENT_BITS["MESSAGE_CONTENT"]
_MESSAGE_EVENTS: Final = frozenset({"MESSAGE_CREATE", "MESSAGE_UPDATE"})


class EventPool:
    """Pre-generated templates for every event in the mix, two flavours of message events
    (with and without MESSAGE_CONTENT)."""

    def __init__(self, world: World, seed: int) -> None:
        self._world = world
        rng = random.Random(f"traffic-{seed}")
        # key: (event, dm, with_content)
        self._pools: dict[tuple[str, bool, bool], list[Template]] = {}
        for name, _, _, dm in _MIX:
            for content in (True, False):
                if (name, dm, content) in self._pools:
                    continue
                if not content and name not in _MESSAGE_EVENTS:
                    self._pools[(name, dm, False)] = self._pools[(name, dm, True)]
                    continue
                self._pools[(name, dm, content)] = [
                    Template(name, _body(name, dm, content, world, rng), dm)
                    for _ in range(VARIANTS_PER_TYPE)
                ]
        self._mixes: dict[tuple[int, bool], list[list[Template]]] = {}

    def mix_for(self, intents: int, shard_zero: bool) -> list[list[Template]]:
        """The weighted choice list for a session: one entry per weight unit, each a pool of
        variants. Events whose intent is missing are left out; DM events only on shard 0."""
        key = (intents, shard_zero)
        mix = self._mixes.get(key)
        if mix is None:
            mix = []
            content = bool(intents & MESSAGE_CONTENT)
            for name, weight, intent, dm in _MIX:
                if intent and not intents & intent:
                    continue
                if dm and not shard_zero:
                    continue
                mix.extend([self._pools[(name, dm, content)]] * weight)
            self._mixes[key] = mix
        return mix


class ShardTraffic:
    """Picks and renders the next live event for one session."""

    __slots__ = ("_app", "_dm_channels", "_guilds", "_ids", "_mix", "_rng")

    def __init__(
        self,
        pool: EventPool,
        world: World,
        guilds: list[Guild],
        intents: int,
        shard_id: int,
        bot: FakeUser,
        ids: SnowflakeSource,
        seed: int,
    ) -> None:
        self._rng = random.Random(f"shard-{seed}-{shard_id}")
        self._guilds = [g for g in guilds if not g.unavailable]
        self._mix = pool.mix_for(intents, shard_id == 0)
        if not self._guilds:
            self._mix = [p for p in self._mix if p[0].dm]
        self._dm_channels = world.dm_channels
        self._ids = ids
        self._app = b'"%d"' % bot.id

    @property
    def empty(self) -> bool:
        return not self._mix

    def next_event(self) -> tuple[str, bytes, int | None]:
        """The next event's name, body and guild id (None: a DM)."""
        rng = self._rng
        variants = self._mix[int(rng.random() * len(self._mix))]
        template = variants[int(rng.random() * len(variants))]
        if template.dm:
            channel = self._dm_channels[int(rng.random() * len(self._dm_channels))]
            body = template.render(b"null", b'"%d"' % channel, self._ids, self._app)
            return template.name, body, None
        guild = self._guilds[int(rng.random() * len(self._guilds))]
        channels = guild.text_channels
        channel = (
            guild.voice_channel
            if template.name == "VOICE_STATE_UPDATE"
            else (channels[int(rng.random() * len(channels))])
        )
        body = template.render(b'"%d"' % guild.id, b'"%d"' % channel, self._ids, self._app)
        return template.name, body, guild.id


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(low, high)))


def _member(user: FakeUser, rng: random.Random) -> dict[str, Any]:
    return {
        "roles": [],
        "nick": None if rng.random() < 0.7 else user.global_name + "!",
        "avatar": None,
        "banner": None,
        "premium_since": None,
        "pending": False,
        "joined_at": "2023-03-14T09:26:53.589000+00:00",
        "flags": 0,
        "deaf": False,
        "mute": False,
        "communication_disabled_until": None,
    }


def _message(
    user: FakeUser, rng: random.Random, dm: bool, content: bool, edited: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {} if dm else {"guild_id": G}
    body |= {
        "type": 0,
        "tts": False,
        "timestamp": "2026-11-28T10:00:00.000000+00:00",
        "pinned": False,
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": False,
        "id": ID,
        "flags": 0,
        "edited_timestamp": "2026-11-28T10:00:05.000000+00:00" if edited else None,
        "content": _text(rng, 3, 60) if content else "",
        "components": [],
        "channel_id": C,
        "author": user.payload(),
        "attachments": [],
        "embeds": [],
    }
    if content and rng.random() < 0.25:
        body["embeds"] = [
            {
                "type": "rich",
                "title": _text(rng, 2, 6),
                "description": _text(rng, 20, 120),
                "color": rng.randrange(0xFFFFFF),
                "fields": [
                    {"name": _text(rng, 1, 3), "value": _text(rng, 3, 20), "inline": True}
                    for _ in range(rng.randrange(0, 5))
                ],
                "footer": {"text": _text(rng, 2, 6)},
                "content_scan_version": 2,
            }
        ]
    if not dm:
        body["member"] = _member(user, rng)
    if rng.random() < 0.5:
        body["nonce"] = str(rng.getrandbits(62))
    return body


def _body(name: str, dm: bool, content: bool, world: World, rng: random.Random) -> dict[str, Any]:
    user = rng.choice(world.users)
    if name in _MESSAGE_EVENTS:
        return _message(user, rng, dm, content, edited=name == "MESSAGE_UPDATE")
    if name == "TYPING_START":
        body: dict[str, Any] = {} if dm else {"guild_id": G}
        body |= {
            "user_id": str(user.id),
            "timestamp": 1_795_000_000 + rng.randrange(10**6),
            "channel_id": C,
        }
        if not dm:
            body["member"] = _member(user, rng) | {"user": user.payload()}
        return body
    if name == "PRESENCE_UPDATE":
        status = rng.choice(_STATUSES)
        activities: list[dict[str, Any]] = []
        if status != "offline" and rng.random() < 0.6:
            game = rng.choice(_GAMES)
            activities.append(
                {
                    "type": 2 if game == "Spotify" else 0,
                    "name": game,
                    "id": f"{rng.getrandbits(64):016x}",
                    "created_at": 1_795_000_000_000 + rng.randrange(10**9),
                    "timestamps": {"start": 1_794_990_000_000 + rng.randrange(10**7)},
                    "application_id": str(rng.getrandbits(60)),
                    "details": _text(rng, 1, 5),
                    "state": _text(rng, 1, 4),
                }
            )
        return {
            "guild_id": G,
            "user": {"id": str(user.id)},
            "status": status,
            "client_status": {} if status == "offline" else {"desktop": status},
            "activities": activities,
        }
    if name in ("GUILD_MEMBER_UPDATE", "GUILD_MEMBER_ADD"):
        return {"guild_id": G, "user": user.payload()} | _member(user, rng)
    if name == "MESSAGE_REACTION_ADD":
        return {
            "guild_id": G,
            "user_id": str(user.id),
            "type": 0,
            "message_id": ID,
            "message_author_id": str(rng.choice(world.users).id),
            "member": _member(user, rng) | {"user": user.payload()},
            "emoji": {"id": None, "name": rng.choice(_EMOJI)},
            "channel_id": C,
            "burst": False,
            "burst_colors": [],
        }
    if name == "MESSAGE_REACTION_REMOVE":
        return {
            "guild_id": G,
            "user_id": str(user.id),
            "type": 0,
            "message_id": ID,
            "emoji": {"id": None, "name": rng.choice(_EMOJI)},
            "channel_id": C,
            "burst": False,
        }
    if name == "MESSAGE_DELETE":
        return {"guild_id": G, "id": ID, "channel_id": C}
    if name == "VOICE_STATE_UPDATE":
        return {
            "guild_id": G,
            "member": _member(user, rng) | {"user": user.payload()},
            "user_id": str(user.id),
            "suppress": False,
            "session_id": f"{rng.getrandbits(128):032x}",
            "self_video": False,
            "self_mute": rng.random() < 0.3,
            "self_deaf": False,
            "request_to_speak_timestamp": None,
            "mute": False,
            "deaf": False,
            "channel_id": C if rng.random() < 0.8 else None,
        }
    if name == "INTERACTION_CREATE":
        return {
            "guild_id": G,
            "version": 1,
            "type": 2,
            "token": f"aW50ZXJhY3Rpb246{rng.getrandbits(256):064x}",
            "member": _member(user, rng)
            | {"user": user.payload(), "permissions": "2248473465835073"},
            "locale": "en-US",
            "guild_locale": "en-US",
            "id": ID,
            "entitlements": [],
            "data": {
                "type": 1,
                "name": rng.choice(["ping", "play", "help", "stats"]),
                "id": str(rng.getrandbits(60)),
            },
            "context": 0,
            "channel_id": C,
            "channel": {"id": C, "type": 0, "flags": 0},
            "authorizing_integration_owners": {"0": G},
            "attachment_size_limit": 10485760,
            "app_permissions": "2248473465835073",
            "application_id": APP,
        }
    if name == "CHANNEL_UPDATE":
        return {
            "guild_id": G,
            "id": C,
            "type": 0,
            "name": rng.choice(["general", "chat", "lounge", "memes"]),
            "position": rng.randrange(10),
            "parent_id": None,
            "topic": _text(rng, 2, 10),
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "permission_overwrites": [],
            "flags": 0,
        }
    raise ValueError(f"no body generator for {name}")
