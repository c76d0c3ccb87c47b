"""A seeded, realistic gateway receive corpus, compressed exactly as the gateway sends it.

The same seed always gives the same bytes, so runs on different days and machines measure the
same work. Shapes follow Discord's documented payloads (compact JSON, key order ``t, s, op, d``
as captured from the real gateway); the mix is dominated by the small high-rate events a busy
bot sees (MESSAGE_CREATE, PRESENCE_UPDATE, TYPING_START, member updates, reactions,
interactions), with heartbeat ACKs between, after a few large GUILD_CREATEs (50-500 KB).

Compression: one zlib stream per connection with a Z_SYNC_FLUSH after every message (so each
message ends in ``00 00 FF FF``), some messages split over several websocket frames; and one
zstd stream per connection flushed per message (FLUSH_BLOCK) and never ended, one message per
websocket message (the gateway never splits zstd-stream messages).
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from typing import Any, Final

import zstandard

ZLIB_SUFFIX: Final = b"\x00\x00\xff\xff"
DEFAULT_SEED: Final = 20261128

# Relative weights of the steady-state mix (presences dominate for bots with GUILD_PRESENCES;
# the protocol reference section 7.4).
_MIX: Final[tuple[tuple[str, int], ...]] = (
    ("MESSAGE_CREATE", 30),
    ("PRESENCE_UPDATE", 28),
    ("TYPING_START", 14),
    ("GUILD_MEMBER_UPDATE", 8),
    ("MESSAGE_REACTION_ADD", 8),
    ("MESSAGE_REACTION_REMOVE", 2),
    ("INTERACTION_CREATE", 5),
    ("MESSAGE_UPDATE", 3),
    ("MESSAGE_DELETE", 2),
)
_ACK_EVERY: Final = 40  # one heartbeat ACK per this many dispatches
_WORDS: Final = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "shard", "gateway",
    "resume", "identify", "heartbeat", "ack", "hello", "world", "pog", "gg", "lol", "ok",
    "yes", "no", "maybe", "tomorrow", "tonight", "raid", "boss", "loot", "queue", "ranked",
    "patch", "notes", "server", "emoji", "role", "channel", "voice", "stage", "thread", "poll",
    "vote", "moderator", "bot",
)  # fmt: skip
_LOCALES: Final = ("en-US", "en-GB", "de", "fr", "es-ES", "pt-BR", "ja", "ko", "pl", "tr")


@dataclass(frozen=True, slots=True)
class Corpus:
    """Messages (inflated JSON bytes) and their compressed websocket frames."""

    messages: list[bytes]
    dispatches: int  # op 0 messages among them
    zlib_frames: list[bytes]  # zlib-stream, some messages split over several frames
    zstd_frames: list[bytes]  # zstd-stream, exactly one message per frame
    guild_create: bytes  # the largest GUILD_CREATE, for the memory floor

    @property
    def inflated_bytes(self) -> int:
        return sum(len(m) for m in self.messages)


class _Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self._snow = 1_100_000_000_000_000_000

    def snowflake(self) -> str:
        self._snow += self.r.randrange(1 << 22, 1 << 30)
        return str(self._snow)

    def text(self, lo: int, hi: int) -> str:
        return " ".join(self.r.choice(_WORDS) for _ in range(self.r.randint(lo, hi)))

    def hexhash(self) -> str:
        return f"{self.r.getrandbits(128):032x}"

    def iso(self) -> str:
        r = self.r
        return (
            f"2026-{r.randint(1, 11):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
            f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999999):06d}+00:00"
        )

    def user(self, uid: str | None = None) -> dict[str, Any]:
        name = self.r.choice(_WORDS) + str(self.r.randint(1, 9999))
        return {
            "username": name,
            "public_flags": self.r.choice((0, 0, 64, 128, 256, 4194304)),
            "id": uid or self.snowflake(),
            "global_name": name.title() if self.r.random() < 0.8 else None,
            "discriminator": "0",
            "clan": None,
            "avatar_decoration_data": None,
            "avatar": self.hexhash() if self.r.random() < 0.85 else None,
        }

    def member(self, roles: list[str], with_user: bool) -> dict[str, Any]:
        m: dict[str, Any] = {
            "roles": self.r.sample(roles, k=min(len(roles), self.r.randint(0, 4))),
            "premium_since": None,
            "pending": False,
            "nick": self.text(1, 2) if self.r.random() < 0.2 else None,
            "mute": False,
            "joined_at": self.iso(),
            "flags": 0,
            "deaf": False,
            "communication_disabled_until": None,
            "banner": None,
            "avatar": None,
        }
        if with_user:
            m["user"] = self.user()
        return m

    def activity(self) -> dict[str, Any]:
        kind = self.r.choice((0, 0, 2, 4))
        a: dict[str, Any] = {
            "type": kind,
            "name": "Custom Status" if kind == 4 else self.text(1, 3).title(),
            "id": self.hexhash()[:16],
            "created_at": self.r.randint(1_700_000_000_000, 1_800_000_000_000),
        }
        if kind == 4:
            a["state"] = self.text(2, 6)
        elif kind == 0:
            a["timestamps"] = {"start": self.r.randint(1_700_000_000_000, 1_800_000_000_000)}
            a["application_id"] = self.snowflake()
        else:
            a.update(
                details=self.text(2, 5),
                state=self.text(1, 3),
                sync_id=self.hexhash()[:22],
                party={"id": "spotify:" + self.snowflake()},
                assets={"large_text": self.text(2, 4), "large_image": "spotify:" + self.hexhash()},
            )
        return a

    def presence(self, guild_id: str, uid: str | None = None) -> dict[str, Any]:
        status = self.r.choice(("online", "online", "idle", "dnd"))
        return {
            "user": {"id": uid or self.snowflake()},
            "status": status,
            "guild_id": guild_id,
            "client_status": {self.r.choice(("desktop", "mobile", "web")): status},
            "broadcast": None,
            "activities": [self.activity() for _ in range(self.r.choice((0, 1, 1, 2)))],
        }


@dataclass(slots=True)
class _Guild:
    id: str
    channels: list[str]
    roles: list[str]
    members: list[str]


def _guild_create(g: _Gen, target_bytes: int) -> tuple[_Guild, dict[str, Any]]:
    gid = g.snowflake()
    roles = [g.snowflake() for _ in range(g.r.randint(15, 60))]
    channels: list[dict[str, Any]] = []
    for pos in range(g.r.randint(20, 120)):
        cid = g.snowflake()
        channels.append(
            {
                "version": g.r.randint(0, 1 << 40),
                "type": g.r.choice((0, 0, 0, 2, 4, 5, 13, 15)),
                "topic": g.text(3, 15) if g.r.random() < 0.4 else None,
                "rate_limit_per_user": g.r.choice((0, 0, 5, 30)),
                "position": pos,
                "permission_overwrites": [
                    {"type": 0, "id": g.r.choice(roles), "deny": "1024", "allow": "0"}
                    for _ in range(g.r.randint(0, 3))
                ],
                "parent_id": None,
                "nsfw": False,
                "name": "-".join(g.text(1, 3).split()),
                "last_message_id": g.snowflake(),
                "id": cid,
                "flags": 0,
            }
        )
    role_objs = [
        {
            "version": g.r.randint(0, 1 << 40),
            "unicode_emoji": None,
            "tags": {},
            "position": i,
            "permissions": str(g.r.getrandbits(40)),
            "name": g.text(1, 2).title(),
            "mentionable": g.r.random() < 0.3,
            "managed": False,
            "id": rid,
            "icon": None,
            "hoist": g.r.random() < 0.3,
            "flags": 0,
            "colors": {"primary_color": g.r.getrandbits(24), "secondary_color": None},
            "color": g.r.getrandbits(24),
        }
        for i, rid in enumerate(roles)
    ]
    guild: dict[str, Any] = {
        "id": gid,
        "name": g.text(1, 4).title(),
        "icon": g.hexhash(),
        "description": g.text(5, 20),
        "owner_id": g.snowflake(),
        "region": "deprecated",
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 2,
        "features": ["COMMUNITY", "NEWS", "WELCOME_SCREEN_ENABLED", "MEMBER_VERIFICATION_GATE"],
        "mfa_level": 0,
        "system_channel_id": channels[0]["id"],
        "premium_tier": g.r.randint(0, 3),
        "premium_subscription_count": g.r.randint(0, 40),
        "preferred_locale": g.r.choice(_LOCALES),
        "nsfw_level": 0,
        "max_members": 500000,
        "max_video_channel_users": 25,
        "joined_at": g.iso(),
        "large": True,
        "unavailable": False,
        "roles": role_objs,
        "emojis": [
            {
                "version": 0,
                "roles": [],
                "require_colons": True,
                "name": g.r.choice(_WORDS) + str(i),
                "managed": False,
                "id": g.snowflake(),
                "available": True,
                "animated": g.r.random() < 0.2,
            }
            for i in range(g.r.randint(10, 60))
        ],
        "stickers": [],
        "channels": channels,
        "threads": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "voice_states": [],
        "members": [],
        "presences": [],
    }
    members: list[str] = []
    # Members and their presences make up the bulk of a large guild, as in real captures.
    size = len(json.dumps(guild, separators=(",", ":")))
    while size < target_bytes or not members:  # events pick authors among the members
        m = g.member(roles, with_user=True)
        members.append(m["user"]["id"])
        guild["members"].append(m)
        size += len(json.dumps(m, separators=(",", ":"))) + 1
        if g.r.random() < 0.6:
            p = g.presence(gid, m["user"]["id"])
            del p["guild_id"]
            guild["presences"].append(p)
            size += len(json.dumps(p, separators=(",", ":"))) + 1
    guild["member_count"] = len(members) * g.r.randint(3, 20)
    return _Guild(gid, [c["id"] for c in channels], roles, members), guild


def _event(g: _Gen, kind: str, guild: _Guild, recent: list[tuple[str, str]]) -> dict[str, Any]:
    r = g.r
    cid = r.choice(guild.channels)
    if kind in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
        mid = g.snowflake()
        recent.append((mid, cid))
        if len(recent) > 200:
            del recent[0]
        author = g.user(r.choice(guild.members))
        d: dict[str, Any] = {
            "type": 0,
            "tts": False,
            "timestamp": g.iso(),
            "pinned": False,
            "nonce": str(r.getrandbits(60)),
            "mentions": [g.user() for _ in range(r.choice((0, 0, 0, 1, 2)))],
            "mention_roles": [],
            "mention_everyone": False,
            "member": g.member(guild.roles, with_user=False),
            "id": mid,
            "flags": 0,
            "embeds": [],
            "edited_timestamp": g.iso() if kind == "MESSAGE_UPDATE" else None,
            "content": g.text(3, 60),
            "components": [],
            "channel_type": 0,
            "channel_id": cid,
            "author": author,
            "attachments": [],
            "guild_id": guild.id,
        }
        if r.random() < 0.12:
            d["embeds"].append(
                {
                    "type": "rich",
                    "title": g.text(2, 8),
                    "description": g.text(20, 120),
                    "color": r.getrandbits(24),
                    "url": "https://example.com/" + g.hexhash(),
                    "fields": [
                        {"name": g.text(1, 3), "value": g.text(3, 20), "inline": r.random() < 0.5}
                        for _ in range(r.randint(0, 5))
                    ],
                }
            )
        if r.random() < 0.08:
            fid = g.snowflake()
            d["attachments"].append(
                {
                    "width": 1920,
                    "url": f"https://cdn.example.invalid/attachments/{cid}/{fid}/image.png",
                    "size": r.randint(10_000, 8_000_000),
                    "proxy_url": f"https://media.discordapp.net/attachments/{cid}/{fid}/image.png",
                    "placeholder_version": 1,
                    "placeholder": g.hexhash()[:28],
                    "id": fid,
                    "height": 1080,
                    "filename": "image.png",
                    "content_type": "image/png",
                    "content_scan_version": 1,
                }
            )
        if r.random() < 0.15 and recent:
            ref_id, ref_cid = r.choice(recent)
            d["message_reference"] = {
                "type": 0,
                "message_id": ref_id,
                "channel_id": ref_cid,
                "guild_id": guild.id,
            }
        return d
    if kind == "PRESENCE_UPDATE":
        return g.presence(guild.id, r.choice(guild.members))
    if kind == "TYPING_START":
        m = g.member(guild.roles, with_user=True)
        return {
            "user_id": m["user"]["id"],
            "timestamp": r.randint(1_700_000_000, 1_800_000_000),
            "member": m,
            "channel_id": cid,
            "guild_id": guild.id,
        }
    if kind == "GUILD_MEMBER_UPDATE":
        m = g.member(guild.roles, with_user=True)
        m["guild_id"] = guild.id
        return m
    if kind in ("MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE"):
        mid, rcid = recent[-1] if recent else (g.snowflake(), cid)
        d = {
            "user_id": r.choice(guild.members),
            "type": 0,
            "message_id": mid,
            "emoji": {
                "name": r.choice(("\U0001f44d", "\U0001f602", "\u2764\ufe0f", "\U0001f525")),
                "id": None,
            },
            "channel_id": rcid,
            "burst": False,
            "guild_id": guild.id,
        }
        if kind == "MESSAGE_REACTION_ADD":
            d["member"] = g.member(guild.roles, with_user=True)
            d["message_author_id"] = r.choice(guild.members)
        return d
    if kind == "MESSAGE_DELETE":
        mid, rcid = recent[-1] if recent else (g.snowflake(), cid)
        return {"id": mid, "channel_id": rcid, "guild_id": guild.id}
    if kind == "INTERACTION_CREATE":
        app = "1000000000000000001"
        return {
            "version": 1,
            "type": 2,
            "token": "aW50ZXJhY3Rpb246" + g.hexhash() + g.hexhash() + g.hexhash(),
            "member": g.member(guild.roles, with_user=True),
            "locale": r.choice(_LOCALES),
            "id": g.snowflake(),
            "guild_locale": "en-US",
            "guild_id": guild.id,
            "guild": {"locale": "en-US", "id": guild.id, "features": ["COMMUNITY"]},
            "entitlements": [],
            "entitlement_sku_ids": [],
            "data": {
                "type": 1,
                "name": r.choice(("play", "rank", "ban", "poll", "remind")),
                "id": g.snowflake(),
                "options": [
                    {"value": g.text(1, 6), "type": 3, "name": "query"},
                ],
            },
            "context": 0,
            "channel_id": cid,
            "channel": {
                "type": 0,
                "name": "general",
                "id": cid,
                "guild_id": guild.id,
                "permissions": "2248473465835073",
                "nsfw": False,
                "position": 3,
                "flags": 0,
                "last_message_id": g.snowflake(),
                "topic": None,
                "rate_limit_per_user": 0,
                "parent_id": None,
            },
            "authorizing_integration_owners": {"0": guild.id},
            "attachment_size_limit": 10485760,
            "application_id": app,
            "app_permissions": "2248473465835073",
        }
    raise ValueError(f"no generator for {kind}")


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _dispatch(t: str, s: int, d: dict[str, Any]) -> bytes:
    return _dumps({"t": t, "s": s, "op": 0, "d": d})


def generate_messages(
    events: int,
    *,
    seed: int = DEFAULT_SEED,
    guild_sizes: tuple[int, ...] = (60_000, 140_000, 280_000, 480_000),
) -> tuple[list[bytes], int, bytes]:
    """Hello, READY, the GUILD_CREATEs, then ``events`` steady-state dispatches with an ACK
    every ``_ACK_EVERY``. Returns (messages, dispatch count, largest GUILD_CREATE)."""
    g = _Gen(seed)
    msgs: list[bytes] = [
        _dumps(
            {
                "t": None,
                "s": None,
                "op": 10,
                "d": {
                    "heartbeat_interval": 41250,
                    "_trace": ['["gateway-prd-us-east1-b-0abc",{"micros":0.0}]'],
                },
            }
        ),
    ]
    guild_payloads: list[tuple[_Guild, dict[str, Any]]] = [
        _guild_create(g, size) for size in guild_sizes
    ]
    seq = 1
    ready = {
        "v": 10,
        "user_settings": {},
        "user": {
            "verified": True,
            "username": "benchbot",
            "mfa_enabled": False,
            "id": "1000000000000000001",
            "global_name": None,
            "flags": 0,
            "email": None,
            "discriminator": "0",
            "bot": True,
            "avatar": None,
        },
        "session_type": "normal",
        "session_id": g.hexhash(),
        "resume_gateway_url": "wss://gateway-us-east1-b.discord.gg",
        "relationships": [],
        "private_channels": [],
        "presences": [],
        "guilds": [{"unavailable": True, "id": gd.id} for gd, _ in guild_payloads],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": ["us-east", "us-central", "atlanta", "newark", "us-south"],
        "game_relationships": [],
        "auth": {},
        "application": {"id": "1000000000000000001", "flags": 565248},
        "_trace": ['["gateway-prd-us-east1-b-0abc",{"micros":12345}]'],
        "shard": [0, 1],
    }
    msgs.append(_dispatch("READY", seq, ready))
    largest = b""
    for _, payload in guild_payloads:
        seq += 1
        m = _dispatch("GUILD_CREATE", seq, payload)
        largest = max(largest, m, key=len)
        msgs.append(m)
    kinds = [k for k, _ in _MIX]
    weights = [w for _, w in _MIX]
    recent: list[tuple[str, str]] = []
    ack = _dumps({"t": None, "s": None, "op": 11, "d": None})
    dispatches = 1 + len(guild_payloads)
    for i in range(events):
        seq += 1
        kind = g.r.choices(kinds, weights)[0]
        guild = g.r.choice(guild_payloads)[0]
        msgs.append(_dispatch(kind, seq, _event(g, kind, guild, recent)))
        dispatches += 1
        if i % _ACK_EVERY == _ACK_EVERY - 1:
            msgs.append(ack)
    return msgs, dispatches, largest


def zlib_stream_frames(messages: list[bytes], *, seed: int = DEFAULT_SEED) -> list[bytes]:
    """One deflate stream, a sync flush per message; every message over 16 KiB and about one
    in fifty of the rest is split over 2-4 websocket frames (only the last ends in the suffix)."""
    r = random.Random(seed ^ 0x5A5A)
    comp = zlib.compressobj()
    frames: list[bytes] = []
    for m in messages:
        data = comp.compress(m) + comp.flush(zlib.Z_SYNC_FLUSH)
        if len(data) > 64 and (len(m) > 16_384 or r.random() < 0.02):
            frames.extend(_split(data, r.randint(2, 4), r))
        else:
            frames.append(data)
    return frames


def _split(data: bytes, parts: int, r: random.Random) -> list[bytes]:
    cuts = sorted(r.sample(range(8, len(data) - 8), parts - 1))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    # A non-final piece that happens to end in the suffix would be inflated early; move the cut.
    for i in range(len(pieces) - 1):
        while pieces[i].endswith(ZLIB_SUFFIX):
            pieces[i], pieces[i + 1] = pieces[i] + pieces[i + 1][:1], pieces[i + 1][1:]
    return pieces


def zstd_stream_frames(messages: list[bytes]) -> list[bytes]:
    """One zstd frame that never ends, a block flush per message, one message per frame.
    Level 3 without a content size gives a 2 MiB window, as a streaming server would use."""
    cobj = zstandard.ZstdCompressor(level=3).compressobj()
    return [cobj.compress(m) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) for m in messages]


def build(events: int, *, seed: int = DEFAULT_SEED, quick: bool = False) -> Corpus:
    sizes = (50_000, 120_000) if quick else (60_000, 140_000, 280_000, 480_000)
    messages, dispatches, largest = generate_messages(events, seed=seed, guild_sizes=sizes)
    return Corpus(
        messages=messages,
        dispatches=dispatches,
        zlib_frames=zlib_stream_frames(messages, seed=seed),
        zstd_frames=zstd_stream_frames(messages),
        guild_create=largest,
    )
