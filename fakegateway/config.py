"""Every knob of the fake gateway in one frozen settings object, plus bot-token helpers.

Defaults mirror what Discord does (or, where the protocol reference marks a behaviour as
undocumented, the most plausible choice); tests shrink the intervals. Each field carries its
help text: the command line (``fakegateway.cli``) is generated from these fields.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
from typing import Any, Final

from workers.protocol import MAX_GUILDS_PER_SHARD, PRIVILEGED_INTENTS

DEFAULT_BOT_ID: Final = 1_100_000_000_000_000_001
# Guilds per recommended shard when ``guilds`` is not given: small enough to start fast,
# big enough that every shard gets a realistic GUILD_CREATE burst.
GUILDS_PER_SHARD_DEFAULT: Final = 10

# A rate-limit bucket: (requests, per this many seconds).
Bucket = tuple[int, float]


def _f(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True, kw_only=True)
class FakeConfig:
    """Settings of one fake gateway. Times are in seconds unless a name says otherwise."""

    host: str = _f("127.0.0.1", "address to bind")
    port: int = _f(0, "port to bind; 0 picks a free one")
    token: str | None = _f(
        None,
        "the only token accepted (default: $SHARDMGR_FAKE_TOKEN, else any well-formed token); "
        "'generate' prints a fresh one to stderr",
    )
    bot_id: int = _f(DEFAULT_BOT_ID, "bot user id when --token is not given")
    bot_name: str = _f("FakeBot", "the bot user's name")
    shards: int = _f(1, "recommended shard count (/gateway/bot)")
    max_concurrency: int = _f(1, "identify buckets (session_start_limit.max_concurrency)")
    identify_window_s: float = _f(5.0, "seconds each identify bucket waits between identifies")
    heartbeat_interval_s: float = _f(41.25, "Hello's heartbeat interval in seconds")
    heartbeat_timeout_slack: float = _f(
        5.0, "seconds past interval*1.5 before a silent connection is closed"
    )
    heartbeat_timeout_code: int = _f(4000, "close code for a connection that stopped heartbeating")
    guilds: int | None = _f(None, "guild count (default 10 per --shards)")
    unavailable_fraction: float = _f(
        0.0, "fraction of guilds sent as unavailable (GUILD_DELETE) after READY"
    )
    event_rate: float = _f(0.0, "dispatches/s per connected, authenticated shard")
    seed: int = _f(0, "seed for guilds and traffic")
    chaos_seed: int | None = _f(None, "inject random faults, seeded (off by default)")
    chaos_interval_s: float = _f(10.0, "seconds between chaos faults (±50%)")
    session_ttl_s: float = _f(180.0, "seconds a disconnected session stays resumable")
    session_start_total: int = _f(1000, "session_start_limit.total")
    session_start_remaining: int | None = _f(
        None, "session_start_limit.remaining at start (default: the total)"
    )
    reset_after_s: float = _f(86400.0, "session-start budget window, seconds")
    max_guilds_per_shard: int = _f(
        MAX_GUILDS_PER_SHARD, "more guilds than this on one shard: close 4011"
    )
    privileged_intents: int = _f(
        PRIVILEGED_INTENTS,
        "intents enabled in the fake portal, e.g. GUILD_MEMBERS,MESSAGE_CONTENT or 0",
    )
    # Discord answers an identify-concurrency violation after a few seconds.
    invalid_session_delay_s: float = _f(
        1.0, "seconds before op 9 answers an identify-concurrency violation"
    )
    # Users report a rejected identify still costs a session start (discord-api-docs#1328).
    violation_consumes_start: bool = _f(
        True, "a rejected (concurrency-violating) identify spends a session start"
    )
    token_reset_on_exhaustion: bool = _f(
        True,
        "an identify at remaining == 0 resets the token (every socket closes with 4004); "
        "off: op 9 instead",
    )
    replay_buffer: int = _f(1000, "dispatches kept per session for RESUME replay")
    large_bot_multiple: int | None = _f(None, "shard counts must be a multiple of this, else 4010")
    expired_resume_close_code: int | None = _f(
        4009, "close code for a RESUME of an expired session; 0 or none: op 9 instead"
    )
    reject_resume_on_main_url: bool = _f(
        False, "refuse (op 9) a RESUME that does not use resume_gateway_url (always counted)"
    )
    zlib_chunk_bytes: int = _f(
        0,
        "split zlib-stream messages into frames of at most this many bytes (0: one frame per "
        "message; else at least 4), never splitting the 4-byte flush suffix",
    )
    payload_compress_threshold: int = _f(
        4096,
        "with Identify compress=true and no transport compression, zlib dispatches larger "
        "than this many bytes",
    )
    reconnect_close_after_s: float = _f(
        5.0, "seconds after op 7 before the server closes the socket itself"
    )
    request_members_window_s: float = _f(
        30.0, "seconds between all-member op 8 requests per guild (else RATE_LIMITED)"
    )
    close_timeout_s: float = _f(3.0, "seconds to wait for a client's close frame")
    rest_global_limit: int = _f(
        50, "REST requests per second per bot (Discord's global limit; 0: unlimited)"
    )
    rest_message_bucket: tuple[int, float] = _f(
        (5, 5.0), "message sends per channel, N/S: N per S seconds (as observed on Discord)"
    )
    rest_route_bucket: tuple[int, float] = _f(
        (50, 1.0), "every other REST route, per route and top-level id, N/S"
    )
    interaction_response_s: float = _f(
        3.0, "seconds an interaction waits for its one callback (Discord: 3)"
    )
    interaction_token_ttl_s: float = _f(
        900.0, "seconds an interaction token works for followups (Discord: 15 min)"
    )

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
        if self.rest_global_limit < 0:
            out.append("rest_global_limit must not be negative (0: unlimited)")
        for name in ("rest_message_bucket", "rest_route_bucket"):
            count, per_s = getattr(self, name)
            if count < 1 or per_s <= 0:
                out.append(f"{name} must be N/S with N at least 1 and S positive")
        for name in ("interaction_response_s", "interaction_token_ttl_s"):
            if getattr(self, name) <= 0:
                out.append(f"{name} must be positive")
        if 0 < self.zlib_chunk_bytes < 4:
            out.append("zlib_chunk_bytes must be 0 (off) or at least 4 (the flush suffix)")
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
