"""The fake bot's world: its users, guilds and members, and the big startup payloads built
from them (READY, GUILD_CREATE, GUILD_MEMBERS_CHUNK). Everything is derived from a seed, so
two runs with the same settings see the same guilds on the same shards."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, Final

import msgspec

DISCORD_EPOCH_MS: Final = 1_420_070_400_000
_encoder: Final = msgspec.json.Encoder()

_ADJECTIVES: Final = (
    "cozy",
    "retro",
    "pixel",
    "midnight",
    "chill",
    "cosmic",
    "lofi",
    "arcane",
    "sunny",
    "neon",
    "quiet",
    "wild",
    "tiny",
    "grand",
    "silver",
    "crimson",
)
_NOUNS: Final = (
    "lounge",
    "guild",
    "hangout",
    "club",
    "den",
    "tavern",
    "garden",
    "station",
    "workshop",
    "league",
    "cafe",
    "archive",
    "harbor",
    "forge",
    "society",
    "collective",
)
_CHANNEL_NAMES: Final = (
    "general",
    "memes",
    "off-topic",
    "announcements",
    "help",
    "music",
    "gaming",
    "art",
    "dev",
    "bot-commands",
    "media",
    "introductions",
)


def snowflake(ms_since_epoch: int, worker: int = 1, process: int = 0, increment: int = 0) -> int:
    return (
        (ms_since_epoch << 22) | ((worker & 31) << 17) | ((process & 31) << 12) | (increment & 4095)
    )


def shard_for(guild_id: int, num_shards: int) -> int:
    """Discord's routing formula."""
    return (guild_id >> 22) % num_shards


class SnowflakeSource:
    """Fresh, increasing ids for messages and interactions, as Discord mints them."""

    __slots__ = ("_base_ms", "_n")

    def __init__(self, base_ms: int) -> None:
        self._base_ms = base_ms
        self._n = 0

    def next(self) -> int:
        self._n += 1
        return snowflake(self._base_ms + (self._n >> 12), 2, 0, self._n)


class FakeUser(msgspec.Struct, frozen=True):
    id: int
    username: str
    global_name: str
    avatar: str

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.global_name,
            "avatar": self.avatar,
            "discriminator": "0",
            "public_flags": 0,
        }


class Guild(msgspec.Struct):
    id: int
    name: str
    owner_id: int
    text_channels: list[int]
    voice_channel: int
    role_ids: list[int]
    member_count: int
    member_seed: int
    unavailable: bool = False

    def member_user(self, world: World, index: int) -> FakeUser:
        """The guild's ``index``-th member: a pool user for the first few, then synthetic."""
        pool = world.users
        if index < len(pool):
            return pool[(self.member_seed + index * 7919) % len(pool)]
        uid = snowflake(300_000_000_000 + self.member_seed % 1000 * 1000 + index, 5, 1, index)
        return FakeUser(uid, f"member{index}", f"Member {index}", f"{uid:032x}"[-32:])


class World:
    """Users and guilds of one fake bot, and their placement on shards."""

    def __init__(self, seed: int, guild_count: int, unavailable_fraction: float = 0.0) -> None:
        rng = random.Random(f"world-{seed}")
        self.users: list[FakeUser] = []
        for i in range(500):
            uid = snowflake(rng.randrange(100_000_000_000, 280_000_000_000), 1, 0, i)
            name = f"{rng.choice(_ADJECTIVES)}{rng.choice(_NOUNS)}{rng.randrange(1000)}"
            self.users.append(FakeUser(uid, name, name.title(), f"{rng.getrandbits(128):032x}"))
        self.guilds: list[Guild] = []
        used: set[int] = set()
        for i in range(guild_count):
            ms = rng.randrange(50_000_000_000, 290_000_000_000)
            gid = snowflake(ms, 0, 0, i)
            while gid in used:
                ms += 1
                gid = snowflake(ms, 0, 0, i)
            used.add(gid)
            size = rng.random()
            # Most bot guilds are small; a few are large enough to need member chunking.
            members = (
                rng.randrange(2, 60)
                if size < 0.7
                else rng.randrange(60, 900)
                if size < 0.95
                else rng.randrange(900, 4000)
            )
            n_text = rng.randrange(2, 8)
            self.guilds.append(
                Guild(
                    id=gid,
                    name=f"{rng.choice(_ADJECTIVES).title()} {rng.choice(_NOUNS).title()}",
                    owner_id=rng.choice(self.users).id,
                    text_channels=[snowflake(ms + 1 + c, 0, 1, c) for c in range(n_text)],
                    voice_channel=snowflake(ms + 20, 0, 1, 20),
                    role_ids=[gid] + [snowflake(ms + 30 + r, 0, 2, r) for r in range(3)],
                    member_count=members,
                    member_seed=rng.randrange(1 << 30),
                    unavailable=rng.random() < unavailable_fraction,
                )
            )
        self.by_id: dict[int, Guild] = {g.id: g for g in self.guilds}
        # channel id -> its guild (text and voice channels)
        self.channel_guild: dict[int, Guild] = {
            cid: g for g in self.guilds for cid in [*g.text_channels, g.voice_channel]
        }
        self._placement: dict[int, list[list[Guild]]] = {}
        self.dm_channels: list[int] = [
            snowflake(290_000_000_000 + i, 3, 0, i) for i in range(len(self.users))
        ]
        self.dm_channel_ids: frozenset[int] = frozenset(self.dm_channels)

    def guilds_for(self, shard_id: int, num_shards: int) -> list[Guild]:
        placement = self._placement.get(num_shards)
        if placement is None:
            placement = [[] for _ in range(num_shards)]
            for guild in self.guilds:
                placement[shard_for(guild.id, num_shards)].append(guild)
            self._placement[num_shards] = placement
        return placement[shard_id] if 0 <= shard_id < num_shards else []

    # ------------------------------------------------------------ payload builders

    def ready(
        self,
        *,
        bot: FakeUser,
        session_id: str,
        resume_gateway_url: str,
        guilds: list[Guild],
        shard: list[int] | None,
    ) -> bytes:
        """READY with the documented keys and the undocumented ones captured from the real
        gateway, so strict clients see the real shape."""
        user = bot.payload() | {
            "bot": True,
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
            "email": None,
        }
        d: dict[str, Any] = {
            "v": 10,
            "user_settings": {},
            "user": user,
            "session_type": "normal",
            "session_id": session_id,
            "resume_gateway_url": resume_gateway_url,
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["us-east", "us-central", "atlanta", "us-south", "newark"],
            "game_relationships": [],
            "auth": {},
            "application": {"id": str(bot.id), "flags": 565248},
            "_trace": ['["gateway-prd-fake-1",{"micros":1000,"calls":[]}]'],
        }
        if shard is not None:
            d["shard"] = shard
        return _encoder.encode(d)

    def channels(self, guild: Guild) -> list[dict[str, Any]]:
        """The guild's channel objects (text channels, then the voice channel)."""
        channels: list[dict[str, Any]] = [
            {
                "id": str(cid),
                "type": 0,
                "name": _CHANNEL_NAMES[i % len(_CHANNEL_NAMES)],
                "position": i,
                "parent_id": None,
                "topic": None,
                "nsfw": False,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "permission_overwrites": [],
                "flags": 0,
            }
            for i, cid in enumerate(guild.text_channels)
        ]
        channels.append(
            {
                "id": str(guild.voice_channel),
                "type": 2,
                "name": "Voice",
                "position": len(channels),
                "parent_id": None,
                "bitrate": 64000,
                "user_limit": 0,
                "rtc_region": None,
                "permission_overwrites": [],
                "flags": 0,
            }
        )
        return channels

    def guild_object(self, guild: Guild) -> dict[str, Any]:
        """The guild as ``GET /guilds/{id}`` returns it (GUILD_CREATE adds the rest)."""
        roles = [
            {
                "id": str(rid),
                "name": "@everyone" if rid == guild.id else f"role-{n}",
                "color": 0 if rid == guild.id else 3447003 * n % 0xFFFFFF,
                "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
                "hoist": False,
                "icon": None,
                "unicode_emoji": None,
                "position": n,
                "permissions": "2222085186637376" if rid == guild.id else "8",
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }
            for n, rid in enumerate(guild.role_ids)
        ]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 2,
            "roles": roles,
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": str(guild.text_channels[0]),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None,
            "incidents_data": None,
        }

    def guild_create(self, guild: Guild, bot: FakeUser, large_threshold: int) -> bytes:
        members = [self.member(guild, bot, joined="2021-01-01T00:00:00.000000+00:00")]
        shown = min(guild.member_count - 1, 25)
        for i in range(shown):
            members.append(self.member(guild, guild.member_user(self, i)))
        d: dict[str, Any] = self.guild_object(guild) | {
            "joined_at": "2021-01-01T00:00:00.000000+00:00",
            "large": guild.member_count > large_threshold,
            "unavailable": False,
            "member_count": guild.member_count,
            "lazy": True,
            "voice_states": [],
            "members": members,
            "channels": self.channels(guild),
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }
        return _encoder.encode(d)

    def guild_unavailable(self, guild: Guild) -> bytes:
        return _encoder.encode({"id": str(guild.id), "unavailable": True})

    def member(
        self, guild: Guild, user: FakeUser, joined: str = "2022-06-01T12:00:00.000000+00:00"
    ) -> dict[str, Any]:
        return {
            "user": user.payload(),
            "roles": [str(guild.role_ids[1])] if user.id % 3 == 0 else [],
            "nick": None,
            "avatar": None,
            "banner": None,
            "joined_at": joined,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }

    def member_chunks(
        self,
        guild: Guild,
        bot: FakeUser,
        *,
        limit: int,
        query: str | None,
        user_ids: list[int] | None,
        nonce: str | None,
        presences: bool,
    ) -> Iterator[bytes]:
        """GUILD_MEMBERS_CHUNK bodies answering one op 8, at most 1000 members each."""
        everyone = [bot] + [guild.member_user(self, i) for i in range(guild.member_count - 1)]
        not_found: list[str] = []
        if user_ids is not None:
            wanted = set(user_ids[:100])
            found = [u for u in everyone if u.id in wanted]
            not_found = [str(u) for u in wanted - {u.id for u in found}]
        else:
            prefix = (query or "").lower()
            found = [u for u in everyone if u.username.lower().startswith(prefix)]
            cap = limit if limit > 0 else (len(found) if not prefix else 100)
            if prefix:
                cap = min(cap, 100)
            found = found[:cap]
        pages = [found[i : i + 1000] for i in range(0, len(found), 1000)] or [[]]
        for index, page in enumerate(pages):
            d: dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": [self.member(guild, u) for u in page],
                "chunk_index": index,
                "chunk_count": len(pages),
            }
            if not_found and index == 0:
                d["not_found"] = not_found
            if presences:
                d["presences"] = [
                    {
                        "user": {"id": str(u.id)},
                        "status": "online",
                        "activities": [],
                        "client_status": {"desktop": "online"},
                    }
                    for u in page
                ]
            if nonce is not None:
                d["nonce"] = nonce
            yield _encoder.encode(d)
