"""What a handler's method names tell a new user at start: an ``on_*`` method no event
will ever call (``on_message`` for ``on_message_create``), and message handlers whose
messages arrive without content because the MESSAGE_CONTENT intent is off. Pure
functions of the names and the intents; ``workers.handlers`` logs what they find."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Final

from workers.events import DISPATCH_NAMES
from workers.protocol import INTENT_BITS

_EVENT_METHODS: Final = tuple(sorted("on_" + name.lower() for name in DISPATCH_NAMES))
_MESSAGE_METHODS: Final = frozenset({"on_message_create", "on_message_update"})
MESSAGE_CONTENT: Final = INTENT_BITS["MESSAGE_CONTENT"]
# discord.py's event names whose gateway name differs: what its users type first.
_DISCORD_PY: Final = {
    "on_message": "on_message_create",
    "on_message_edit": "on_message_update",
    "on_raw_message_edit": "on_message_update",
    "on_raw_message_delete": "on_message_delete",
    "on_member_join": "on_guild_member_add",
    "on_member_remove": "on_guild_member_remove",
    "on_member_update": "on_guild_member_update",
    "on_raw_member_remove": "on_guild_member_remove",
    "on_guild_join": "on_guild_create",
    "on_guild_available": "on_guild_create",
    "on_guild_remove": "on_guild_delete",
    "on_reaction_add": "on_message_reaction_add",
    "on_raw_reaction_add": "on_message_reaction_add",
    "on_reaction_remove": "on_message_reaction_remove",
    "on_raw_reaction_remove": "on_message_reaction_remove",
    "on_interaction": "on_interaction_create",
    "on_typing": "on_typing_start",
    "on_raw_typing": "on_typing_start",
    "on_guild_channel_create": "on_channel_create",
    "on_guild_channel_update": "on_channel_update",
    "on_guild_channel_delete": "on_channel_delete",
}


def nearest_event_method(method: str) -> str | None:
    """The event method a mistyped ``on_*`` name most likely meant: discord.py's name
    for it, the shortest event whose name extends it (``on_message`` ->
    ``on_message_create``), else the closest spelling, else None."""
    lowered = method.lower()
    if lowered in _DISCORD_PY:
        return _DISCORD_PY[lowered]
    if lowered in _EVENT_METHODS:
        return lowered  # the right name in the wrong case
    extending = [m for m in _EVENT_METHODS if m.startswith(lowered + "_")]
    if extending:
        return min(extending, key=lambda m: (len(m), m))
    close = difflib.get_close_matches(lowered, _EVENT_METHODS, n=1, cutoff=0.75)
    return close[0] if close else None


def unmatched_methods(methods: Iterable[str]) -> list[tuple[str, str | None]]:
    """(method, nearest event method or None) for every ``on_*`` method that matches no
    documented dispatch event, so is never called."""
    event_methods = frozenset(_EVENT_METHODS)
    return [
        (m, nearest_event_method(m))
        for m in sorted(methods)
        if m.startswith("on_") and m not in event_methods
    ]


def lacks_message_content(methods: Iterable[str], intents: int) -> bool:
    """True when the handler has message methods but the intents leave MESSAGE_CONTENT
    out: its messages then arrive with empty ``content``, ``embeds``, ``attachments`` and
    ``components`` (except in DMs and messages that mention the bot)."""
    return not intents & MESSAGE_CONTENT and not _MESSAGE_METHODS.isdisjoint(methods)
