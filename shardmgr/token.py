"""The bot token: where it comes from (never an argument) and what it says about itself (its
first part is the bot's user id in base64)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from shardmgr.errors import UserError

TOKEN_ENV: Final = "DISCORD_TOKEN"
# Hosts whose tokens are Discord's shape; another server (Spacebar issues JWTs) is only
# warned about, since its tokens may look like anything.
DISCORD_API_HOSTS: Final = frozenset(
    {"discord.com", "discordapp.com", "canary.discord.com", "ptb.discord.com"}
)


def bot_id_from_token(token: str) -> int | None:
    """The bot's user id, or None when the token's first part is not a base64 snowflake."""
    first = token.strip().removeprefix("Bot ").split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(decoded) if decoded.isdigit() else None


def looks_like_token(text: str) -> bool:
    """Discord's shape, or a JWT's (three dot-separated parts, no path separator): a value
    that must never be echoed back, even when it was given where a path belongs."""
    parts = text.strip().split(".")
    return len(parts) == 3 and all(parts) and "/" not in text and len(text) >= 20


def is_discord_api(api_base: str) -> bool:
    return (urlsplit(api_base).hostname or "") in DISCORD_API_HOSTS


def load_token(
    flag_token_file: str | None, configured_token_file: str | None, env: Mapping[str, str]
) -> tuple[str, str]:
    """The bot token and where it came from: ``--token-file`` beats ``DISCORD_TOKEN``, which
    beats a token file named in the environment or TOML."""
    path = flag_token_file
    if path is None and env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip(), TOKEN_ENV
    path = path or configured_token_file
    if path is None:
        raise UserError(f"no token: set {TOKEN_ENV} or pass --token-file PATH")
    shown = "(a path that looks like a token, not shown)" if looks_like_token(path) else path
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"cannot read the token file {shown}: {exc.strerror}") from None
    return token, f"token file {shown}"


def check_token_shape(token: str, source: str = "the token") -> None:
    """Discord bot tokens are three dot-separated parts, the first the base64 of the bot's id."""
    if token.lower().startswith("bot "):
        raise UserError(f"{source}: give the bare token, without the 'Bot ' prefix")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise UserError(f"{source} is malformed: a bot token has three dot-separated parts")
    if bot_id_from_token(token) is None:
        raise UserError(f"{source} is malformed: its first part is not the bot's id in base64")
