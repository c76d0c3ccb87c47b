"""What a bot token says about itself: its first part is the bot's user id in base64."""

from __future__ import annotations

import base64
import binascii


def bot_id_from_token(token: str) -> int | None:
    """The bot's user id, or None when the token's first part is not a base64 snowflake."""
    first = token.strip().removeprefix("Bot ").split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(decoded) if decoded.isdigit() else None
