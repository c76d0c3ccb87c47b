"""What a new user trips on first (issue 18): an ``on_*`` method no event calls, message
handlers without the MESSAGE_CONTENT intent, and ``gateway.shard_ids`` inside
``start(gateway)``."""

from __future__ import annotations

import logging

import pytest

from tests.doubles import RecordingReporter
from workers import ipc
from workers.events import Event
from workers.gateway import Gateway
from workers.handler_advice import (
    MESSAGE_CONTENT,
    lacks_message_content,
    nearest_event_method,
    unmatched_methods,
)
from workers.handlers import Handler
from workers.permits import InProcessPermits
from workers.runtime import WorkerRuntime


@pytest.mark.parametrize(
    ("method", "nearest"),
    [
        ("on_message", "on_message_create"),  # discord.py's name
        ("on_member_join", "on_guild_member_add"),
        ("on_reaction_add", "on_message_reaction_add"),
        ("on_guild", "on_guild_create"),  # the shortest event extending it
        ("on_messge_create", "on_message_create"),  # a typo
        ("on_Message_Create", "on_message_create"),  # the right name, the wrong case
        ("on_zzz", None),
    ],
)
def test_the_nearest_event_method_of_a_name_that_matches_none(
    method: str, nearest: str | None
) -> None:
    assert nearest_event_method(method) == nearest


def test_only_methods_matching_no_event_are_reported() -> None:
    methods = ["on_message", "on_message_create", "on_ready", "on_typing_start", "on_zzz"]
    assert unmatched_methods(methods) == [
        ("on_message", "on_message_create"),
        ("on_zzz", None),
    ]


@pytest.mark.parametrize(
    ("methods", "intents", "lacks"),
    [
        (["on_message_create"], 1 << 9, True),
        (["on_message_update"], 0, True),
        (["on_message_create"], (1 << 9) | MESSAGE_CONTENT, False),
        (["on_guild_create", "on_message_delete"], 0, False),  # no content to miss
    ],
)
def test_message_handlers_without_message_content_are_found(
    methods: list[str], intents: int, lacks: bool
) -> None:
    assert lacks_message_content(methods, intents) is lacks


class MisnamedBot:
    async def on_message(self, event: Event) -> None: ...

    async def on_ready(self, event: Event) -> None: ...


def test_loading_a_handler_warns_once_per_method_no_event_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="workers.handlers"):
        Handler(MisnamedBot(), "bot:MisnamedBot")
    assert [r.getMessage() for r in caplog.records] == [
        "bot:MisnamedBot.on_message matches no gateway event and is never called; "
        "did you mean on_message_create?"
    ]


class MessageBot:
    def __init__(self) -> None:
        self.shard_ids: list[int] | None = None

    async def start(self, gateway: Gateway) -> None:
        self.shard_ids = gateway.shard_ids

    async def on_message_create(self, event: Event) -> None: ...


def content_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "MESSAGE_CONTENT" in r.getMessage()]


def test_a_message_handler_without_message_content_is_told_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = Handler(MessageBot(), "bot:MessageBot")
    with caplog.at_level(logging.WARNING, logger="workers.handlers"):
        handler.check_intents(1 << 9)
        handler.check_intents((1 << 9) | MESSAGE_CONTENT)
    [warning] = content_warnings(caplog)
    assert warning.startswith(
        "bot:MessageBot handles message events but the MESSAGE_CONTENT intent is not in the intents"
    )


def worker_config(intents: int) -> ipc.WorkerConfig:
    return ipc.WorkerConfig(
        worker_id=0,
        token="token",
        # Nothing listens: the shards keep reconnecting, which is all these tests need.
        gateway_url="ws://127.0.0.1:1",
        num_shards=4,
        shards=[ipc.ShardAssignment(2), ipc.ShardAssignment(3)],
        intents=intents,
    )


async def test_start_sees_the_workers_shard_ids_and_the_missing_intent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = MessageBot()
    runtime = WorkerRuntime(worker_config(1 << 9), InProcessPermits(), RecordingReporter(), bot)
    with caplog.at_level(logging.WARNING, logger="workers.handlers"):
        await runtime.start()
    try:
        assert bot.shard_ids == [2, 3]
        assert len(content_warnings(caplog)) == 1
    finally:
        await runtime.stop()
