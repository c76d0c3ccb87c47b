"""Every knob of the fake gateway in one frozen settings object, plus bot-token helpers.

Defaults mirror what Discord does (or, where the protocol reference marks a behaviour as
undocumented, the most plausible choice); tests shrink the intervals.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
from typing import Final

from workers.protocol import MAX_GUILDS_PER_SHARD, PRIVILEGED_INTENTS

DEFAULT_BOT_ID: Final = 1_100_000_000_000_000_001
# Guilds per recommended shard when ``guilds`` is not given: small enough to start fast,
# big enough that every shard gets a realistic GUILD_CREATE burst.
GUILDS_PER_SHARD_DEFAULT: Final = 10


@dataclasses.dataclass(frozen=True, kw_only=True)
class FakeConfig:
    """Settings of one fake gateway. Times are in seconds unless a name says otherwise."""

    host: str = "127.0.0.1"
    port: int = 0
    # None: accept any well-formed token (the bot id is read from its first part).
    token: str | None = None
    bot_id: int = DEFAULT_BOT_ID
    bot_name: str = "FakeBot"
    # Recommended shard count returned by /gateway/bot.
    shards: int = 1
    max_concurrency: int = 1
    identify_window_s: float = 5.0
    heartbeat_interval_s: float = 41.25
    # Extra time past interval * 1.5 before a silent connection is closed.
    heartbeat_timeout_slack: float = 5.0
    heartbeat_timeout_code: int = 4000
    # None: GUILDS_PER_SHARD_DEFAULT per recommended shard.
    guilds: int | None = None
    # Fraction of guilds that start unavailable (sent as GUILD_DELETE unavailable after READY).
    unavailable_fraction: float = 0.0
    # Dispatches per second per connected, authenticated shard.
    event_rate: float = 0.0
    seed: int = 0
    chaos_seed: int | None = None
    chaos_interval_s: float = 10.0
    session_ttl_s: float = 180.0
    session_start_total: int = 1000
    session_start_remaining: int | None = None
    reset_after_s: float = 86400.0
    max_guilds_per_shard: int = MAX_GUILDS_PER_SHARD
    # Privileged intents the fake "Developer Portal" has enabled.
    privileged_intents: int = PRIVILEGED_INTENTS
    # Delay before op 9 answers an identify-concurrency violation (Discord: a few seconds).
    invalid_session_delay_s: float = 1.0
    # Users report a rejected identify still costs a session start (discord-api-docs#1328).
    violation_consumes_start: bool = True
    # Identify at remaining == 0: close everything with 4004 and refuse the token afterwards.
    token_reset_on_exhaustion: bool = True
    # Max dispatches kept per session for RESUME replay.
    replay_buffer: int = 1000
    # Shard counts must be a multiple of this (large bot sharding), else 4010.
    large_bot_multiple: int | None = None
    # Resume of a session that expired: close with this code (None: op 9 false instead).
    expired_resume_close_code: int | None = 4009
    # A RESUME on the generic URL instead of resume_gateway_url is always counted; with
    # this set it is also refused with op 9 false.
    reject_resume_on_main_url: bool = False
    # Split each zlib-stream message into websocket frames of at most this many bytes
    # (0: one frame per message), to catch clients that inflate per frame.
    zlib_chunk_bytes: int = 0
    # Payload compression (Identify compress=true, no transport compression): dispatches
    # larger than this are sent as complete zlib streams in binary frames.
    payload_compress_threshold: int = 4096
    # How long the server waits after op 7 before closing the socket itself.
    reconnect_close_after_s: float = 5.0
    # Guild member rate limit for all-member op 8 requests.
    request_members_window_s: float = 30.0
    # Close handshake timeout (waiting for the client's close frame).
    close_timeout_s: float = 3.0

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError(problems[0])

    def problems(self) -> list[str]:
        """One line per invalid setting, naming the option to fix."""
        out: list[str] = []
        if not 0 <= self.port <= 65535:
            out.append(f"port {self.port} is not in 0..65535")
        if self.shards < 1:
            out.append("shards must be at least 1")
        if self.max_concurrency < 1:
            out.append("max_concurrency must be at least 1")
        if self.identify_window_s < 0:
            out.append("identify_window_s must not be negative")
        if self.heartbeat_interval_s <= 0:
            out.append("heartbeat_interval_s must be positive")
        if self.guilds is not None and self.guilds < 0:
            out.append("guilds must not be negative")
        if self.event_rate < 0:
            out.append("event_rate must not be negative")
        if self.chaos_interval_s <= 0:
            out.append("chaos_interval_s must be positive")
        if self.session_ttl_s < 0:
            out.append("session_ttl_s must not be negative")
        if self.session_start_total < 0:
            out.append("session_start_total must not be negative")
        if self.session_start_remaining is not None and not (
            0 <= self.session_start_remaining <= self.session_start_total
        ):
            out.append("session_start_remaining must be in 0..session_start_total")
        if self.replay_buffer < 1:
            out.append("replay_buffer must be at least 1")
        if self.large_bot_multiple is not None and self.large_bot_multiple < 1:
            out.append("large_bot_multiple must be at least 1")
        if self.max_guilds_per_shard < 1:
            out.append("max_guilds_per_shard must be at least 1")
        if not 0.0 <= self.unavailable_fraction <= 1.0:
            out.append("unavailable_fraction must be in 0..1")
        if self.token is not None and bot_id_from_token(self.token) is None:
            out.append("token must have Discord's three-part shape (see make_token)")
        for name in (
            "heartbeat_timeout_slack",
            "invalid_session_delay_s",
            "reset_after_s",
            "reconnect_close_after_s",
            "request_members_window_s",
            "payload_compress_threshold",
            "zlib_chunk_bytes",
        ):
            if getattr(self, name) < 0:
                out.append(f"{name} must not be negative")
        if self.close_timeout_s <= 0:
            out.append("close_timeout_s must be positive")
        code = self.expired_resume_close_code
        if code is not None and not 1000 <= code <= 4999:
            out.append("expired_resume_close_code must be a close code (1000..4999) or None")
        if not 1000 <= self.heartbeat_timeout_code <= 4999:
            out.append("heartbeat_timeout_code must be a websocket close code (1000..4999)")
        return out

    @property
    def guild_count(self) -> int:
        return self.guilds if self.guilds is not None else GUILDS_PER_SHARD_DEFAULT * self.shards

    @property
    def start_remaining(self) -> int:
        if self.session_start_remaining is None:
            return self.session_start_total
        return self.session_start_remaining

    @property
    def configured_bot_id(self) -> int:
        """The bot's id: from the configured token if there is one."""
        if self.token is not None:
            parsed = bot_id_from_token(self.token)
            if parsed is not None:
                return parsed
        return self.bot_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def make_token(bot_id: int = DEFAULT_BOT_ID, secret: str = "shardmgr-fake") -> str:
    """A token of Discord's real shape: base64(bot id) . base64(timestamp) . hmac.

    Deterministic for a given (bot_id, secret), so tests and the CLI can agree on it."""
    first = _b64(str(bot_id).encode("ascii"))
    stamp = _b64((1_700_000_000 + bot_id % 1_000_000).to_bytes(4, "big"))
    mac = hmac.new(secret.encode(), f"{bot_id}.{stamp}".encode(), hashlib.sha256).digest()
    return f"{first}.{stamp}.{_b64(mac)[:27]}"


def bot_id_from_token(token: str) -> int | None:
    """The bot id encoded in a token's first part, or None if the token is not well-formed."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts) or len(parts[1]) < 4 or len(parts[2]) < 20:
        return None
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    if any(ch not in alphabet for part in parts for ch in part):
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
    except (binascii.Error, ValueError):
        return None
    text = raw.decode("ascii", errors="replace")
    if not text.isdigit() or not 15 <= len(text) <= 20:
        return None
    return int(text)
