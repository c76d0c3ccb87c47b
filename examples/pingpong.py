"""The ping-pong bot: ``!ping`` gets a reply "pong", and the ``/ping`` slash command
(registered when shard 0 is ready) is answered through the interaction callback; ``!guilds``
and ``!where <guild_id>`` ask every worker of every host (``examples.cluster_commands``).

    shardmgr start --handler examples.pingpong:Bot --intents all

Every worker runs one ``Bot``; REST calls share the bot's rate limits through the
supervisor, whichever worker makes them."""

from __future__ import annotations

import logging
from typing import Any

from examples.cluster_commands import ClusterCommands
from workers.events import Event
from workers.gateway import Gateway
from workers.models import MessageCreate
from workers.rest.errors import HTTPError, NotFound
from workers.rest.helpers import InteractionResponseType

log = logging.getLogger(__name__)

PING_COMMAND = {"name": "ping", "description": "Replies with pong", "type": 1}
APPLICATION_COMMAND = 2  # interaction type
UNKNOWN_INTERACTION = 10062  # Discord's code: expired (3 s) or already answered


class Bot(ClusterCommands):
    def __init__(self) -> None:
        self.gateway: Gateway | None = None
        self.registered = False

    async def start(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def _rest(self) -> Any:
        assert self.gateway is not None, "start(gateway) runs before any event"
        return self.gateway.rest

    async def on_ready(self, event: Event) -> None:
        # One worker registers the commands (a bulk overwrite is idempotent, but there is
        # no point in every shard spending a request on it).
        if event.shard_id != 0 or self.registered:
            return
        application_id = event.data()["application"]["id"]
        try:
            await self._rest.bulk_overwrite_commands(application_id, [PING_COMMAND])
        except HTTPError as exc:
            log.error("could not register /ping", extra={"error": str(exc)})
            return
        self.registered = True

    async def on_message_create(self, message: MessageCreate) -> None:
        if message.author.bot is True:  # UNSET for people
            return
        if message.content == "!ping":
            await self._rest.reply(message, "pong")
            return
        assert self.gateway is not None
        text = await self.cluster_reply(self.gateway, message.content)
        if text is not None:
            await self._rest.reply(message, text)

    async def on_interaction_create(self, event: Event) -> None:
        interaction = event.data()
        if interaction.get("type") != APPLICATION_COMMAND:
            return
        if interaction.get("data", {}).get("name") != "ping":
            return
        try:
            await self._rest.interaction_callback(
                interaction["id"],
                interaction["token"],
                InteractionResponseType.CHANNEL_MESSAGE_WITH_SOURCE,
                {"content": "pong"},
            )
        except NotFound as exc:
            if exc.code != UNKNOWN_INTERACTION:
                raise
            # Nothing left to do: the user already sees "the application did not respond".
            # Not a warning: the fake's live traffic (make run) makes up interactions that
            # no callback can answer, several a second.
            log.debug("interaction expired before its callback", extra={"error": str(exc)})
