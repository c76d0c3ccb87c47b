"""Sending one guild event to every session that owns the guild, as Discord does: a session
owns guild G when ``(G >> 22) % num_shards == shard_id`` (DMs: shard 0). Sessions with two
shard counts (a reshard in progress) each get it. A disconnected but resumable session
gets the event in its replay buffer, so it arrives on RESUME."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from fakegateway.sessions import Session
from fakegateway.state import FakeState
from fakegateway.world import shard_for
from workers.protocol import INTENT_BITS

_encoder: Final = msgspec.json.Encoder()
GUILD_MESSAGES: Final = INTENT_BITS["GUILD_MESSAGES"]
DIRECT_MESSAGES: Final = INTENT_BITS["DIRECT_MESSAGES"]
MESSAGE_CONTENT: Final = INTENT_BITS["MESSAGE_CONTENT"]
# Events whose delivery needs an intent: (in a guild, in a DM).
EVENT_INTENTS: Final[dict[str, tuple[int, int]]] = {
    "MESSAGE_CREATE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_UPDATE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_DELETE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_REACTION_ADD": (
        INTENT_BITS["GUILD_MESSAGE_REACTIONS"],
        INTENT_BITS["DIRECT_MESSAGE_REACTIONS"],
    ),
    "MESSAGE_REACTION_REMOVE": (
        INTENT_BITS["GUILD_MESSAGE_REACTIONS"],
        INTENT_BITS["DIRECT_MESSAGE_REACTIONS"],
    ),
}
# Fields emptied for a session without MESSAGE_CONTENT, as Discord does.
CONTENT_FIELDS: Final = {"content": "", "embeds": [], "attachments": [], "components": []}

Body = Callable[[Session], bytes | None]


def owners(state: FakeState, guild_id: int | None) -> list[Session]:
    """Every live (active or resumable) session that owns the guild, oldest first."""
    out = []
    for session in state.sessions.all:
        if session.state == "ended" or session.num_shards < 1:
            continue
        shard = 0 if guild_id is None else shard_for(guild_id, session.num_shards)
        if shard == session.shard_id:
            out.append(session)
    return out


def allowed(session: Session, event: str, in_guild: bool) -> bool:
    needs = EVENT_INTENTS.get(event)
    if needs is None:
        return True
    return bool(session.intents & needs[0 if in_guild else 1])


def send(state: FakeState, session: Session, event: str, body: bytes) -> None:
    """Dispatch on the session's socket, or into its replay buffer while it has none."""
    conn = state.connections.get(session.connection_id) if session.connection_id else None
    if conn is not None and conn.session is session and not conn.closing:
        conn.dispatch(event, body)
    else:
        session.dispatch(event, body)
        state.stats.dispatches_generated += 1


def fan_out(state: FakeState, guild_id: int | None, event: str, body: Body) -> list[Session]:
    """Send ``event`` to every owner whose intents allow it; ``body(session)`` gives the
    bytes for that session (None: not for it). Returns the sessions reached."""
    reached = []
    for session in owners(state, guild_id):
        if not allowed(session, event, guild_id is not None):
            continue
        data = body(session)
        if data is not None:
            send(state, session, event, data)
            reached.append(session)
    if reached:
        state.changed()
    return reached


class Overlap:
    """Live sessions grouped by shard count, when there is more than one count: a guild
    event one session generates is then copied to the sessions of the other counts that
    own the guild."""

    __slots__ = ("_by_count",)

    def __init__(self, by_count: dict[int, dict[int, list[Session]]]) -> None:
        self._by_count = by_count

    @classmethod
    def of(cls, state: FakeState) -> Overlap | None:
        by_count: dict[int, dict[int, list[Session]]] = {}
        for session in state.sessions.all:
            if session.state != "ended" and session.num_shards >= 1:
                shards = by_count.setdefault(session.num_shards, {})
                shards.setdefault(session.shard_id, []).append(session)
        return cls(by_count) if len(by_count) > 1 else None

    def copy(
        self, state: FakeState, source: Session, event: str, body: bytes, guild_id: int | None
    ) -> None:
        for count, shards in self._by_count.items():
            if count == source.num_shards:
                continue
            shard = 0 if guild_id is None else shard_for(guild_id, count)
            for session in shards.get(shard, ()):
                if allowed(session, event, guild_id is not None):
                    send(state, session, event, body)


def same_for_all(d: object) -> Body:
    data = _encoder.encode(d)
    return lambda _session: data


def message_body(message: dict[str, object], bot_id: int) -> Body:
    """A message's bytes per session: without MESSAGE_CONTENT, content and embeds are
    empty unless the bot wrote the message or is mentioned in it (Discord's exceptions);
    DMs always carry content."""
    full = _encoder.encode(message)
    author = message.get("author")
    own = isinstance(author, dict) and author.get("id") == str(bot_id)
    mentioned = f"<@{bot_id}>" in str(message.get("content", ""))
    if own or mentioned or "guild_id" not in message:
        return lambda _session: full
    stripped = _encoder.encode(message | CONTENT_FIELDS)
    return lambda session: full if session.intents & MESSAGE_CONTENT else stripped
