"""The dispatch event a handler receives: shard, seq, name and the body, decoded lazily
(``data()`` into dicts and lists, ``model()`` into the typed models of ``workers.models``)."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from workers.models import DECODE_ERRORS, MODEL_DECODERS, ModelError

_decode = msgspec.json.decode

# Dispatch names documented in the protocol reference (section 9). Per-second stats count
# any other name as ``OTHER_EVENT``: names come from the network, and a hostile server
# sending millions of distinct ones must not grow a worker's counters or its stats message.
DISPATCH_NAMES: Final = frozenset(
    {
        "READY",
        "RESUMED",
        "RATE_LIMITED",
        "GUILD_CREATE",
        "GUILD_UPDATE",
        "GUILD_DELETE",
        "GUILD_AUDIT_LOG_ENTRY_CREATE",
        "GUILD_BAN_ADD",
        "GUILD_BAN_REMOVE",
        "GUILD_EMOJIS_UPDATE",
        "GUILD_STICKERS_UPDATE",
        "GUILD_INTEGRATIONS_UPDATE",
        "GUILD_MEMBER_ADD",
        "GUILD_MEMBER_REMOVE",
        "GUILD_MEMBER_UPDATE",
        "GUILD_MEMBERS_CHUNK",
        "GUILD_ROLE_CREATE",
        "GUILD_ROLE_UPDATE",
        "GUILD_ROLE_DELETE",
        "GUILD_SCHEDULED_EVENT_CREATE",
        "GUILD_SCHEDULED_EVENT_UPDATE",
        "GUILD_SCHEDULED_EVENT_DELETE",
        "GUILD_SCHEDULED_EVENT_USER_ADD",
        "GUILD_SCHEDULED_EVENT_USER_REMOVE",
        "GUILD_SOUNDBOARD_SOUND_CREATE",
        "GUILD_SOUNDBOARD_SOUND_UPDATE",
        "GUILD_SOUNDBOARD_SOUND_DELETE",
        "GUILD_SOUNDBOARD_SOUNDS_UPDATE",
        "SOUNDBOARD_SOUNDS",
        "CHANNEL_CREATE",
        "CHANNEL_UPDATE",
        "CHANNEL_DELETE",
        "CHANNEL_PINS_UPDATE",
        "CHANNEL_INFO",
        "THREAD_CREATE",
        "THREAD_UPDATE",
        "THREAD_DELETE",
        "THREAD_LIST_SYNC",
        "THREAD_MEMBER_UPDATE",
        "THREAD_MEMBERS_UPDATE",
        "STAGE_INSTANCE_CREATE",
        "STAGE_INSTANCE_UPDATE",
        "STAGE_INSTANCE_DELETE",
        "MESSAGE_CREATE",
        "MESSAGE_UPDATE",
        "MESSAGE_DELETE",
        "MESSAGE_DELETE_BULK",
        "MESSAGE_REACTION_ADD",
        "MESSAGE_REACTION_REMOVE",
        "MESSAGE_REACTION_REMOVE_ALL",
        "MESSAGE_REACTION_REMOVE_EMOJI",
        "MESSAGE_POLL_VOTE_ADD",
        "MESSAGE_POLL_VOTE_REMOVE",
        "TYPING_START",
        "PRESENCE_UPDATE",
        "USER_UPDATE",
        "VOICE_STATE_UPDATE",
        "VOICE_SERVER_UPDATE",
        "VOICE_CHANNEL_EFFECT_SEND",
        "VOICE_CHANNEL_STATUS_UPDATE",
        "VOICE_CHANNEL_START_TIME_UPDATE",
        "INTERACTION_CREATE",
        "APPLICATION_COMMAND_PERMISSIONS_UPDATE",
        "AUTO_MODERATION_RULE_CREATE",
        "AUTO_MODERATION_RULE_UPDATE",
        "AUTO_MODERATION_RULE_DELETE",
        "AUTO_MODERATION_ACTION_EXECUTION",
        "ENTITLEMENT_CREATE",
        "ENTITLEMENT_UPDATE",
        "ENTITLEMENT_DELETE",
        "SUBSCRIPTION_CREATE",
        "SUBSCRIPTION_UPDATE",
        "SUBSCRIPTION_DELETE",
        "INTEGRATION_CREATE",
        "INTEGRATION_UPDATE",
        "INTEGRATION_DELETE",
        "INVITE_CREATE",
        "INVITE_DELETE",
        "WEBHOOKS_UPDATE",
    }
)
OTHER_EVENT: Final = "other"


class Event(msgspec.Struct, gc=False):
    """One gateway dispatch. ``raw`` is the body's JSON bytes; ``data()`` decodes it on
    first use and caches the result, so handlers that only forward bytes never pay for
    a parse.

    A struct the garbage collector does not track: one is made per dispatch and up to
    ``handler_backlog`` are alive per shard, and as tracked objects they kept the young
    generation collecting (13% of the receive path's time in ``make bench``). Untracked
    objects must not sit in reference cycles: nothing here refers back to an event, so a
    handler must not store an event inside that event's own ``data()`` (it would leak)."""

    shard_id: int
    seq: int | None
    name: str
    _body: msgspec.Raw | bytes
    # Which session of the shard produced the event: the checkpoint only compares
    # seqs within one session (a fresh IDENTIFY restarts seq at 1).
    _epoch: int = 0
    # The gateway session (READY's session_id) that produced the event: with ``seq`` it
    # names the event uniquely, which consumers of a sink de-duplicate on.
    session_id: str | None = None
    _data: Any = None
    _decoded: bool = False
    _model: Any = None

    @property
    def raw(self) -> bytes:
        body = self._body
        if not isinstance(body, bytes):
            body = bytes(memoryview(body))
            self._body = body
        return body

    def data(self) -> Any:
        if not self._decoded:
            self._data = _decode(self._body)
            self._decoded = True
        return self._data

    def model(self) -> Any:
        """The body as a typed model (``workers.models.EVENT_MODELS`` names which), decoded
        on first use and cached; None for an event type without a model (use ``data()``).
        Raises ``workers.models.ModelError`` when the payload does not fit its model (a
        handler method annotated with the model then receives this raw event instead)."""
        model = self._model
        if model is None:
            decode = MODEL_DECODERS.get(self.name)
            if decode is None:
                return None
            try:
                model = self._model = decode(self._body)
            except DECODE_ERRORS as exc:
                raise ModelError.of(self.name, exc) from exc
        return model

    def __repr__(self) -> str:
        return f"Event(shard_id={self.shard_id}, seq={self.seq}, name={self.name!r})"
