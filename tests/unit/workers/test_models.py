"""Typed models (``workers.models``): Discord's documented examples and every event of the
benchmark corpus decode; snowflakes are ints, timestamps datetimes, absent fields UNSET;
a handler method annotated with a model receives it, and a payload that does not fit
reaches that method raw, counted as a model error."""

from __future__ import annotations

import asyncio
import logging
import typing
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import corpus
from shardmgr.metrics import Metrics
from tests.observability.test_metrics import scrape, value
from tests.unit.workers import discord_examples as docs
from workers import ipc
from workers.events import Event
from workers.handlers import Delivery, Handler, HandlerLoadError
from workers.models import (
    EVENT_MODELS,
    Guild,
    GuildCreate,
    Interaction,
    Member,
    Message,
    MessageCreate,
    ModelError,
    TypingStart,
)
from workers.protocol import decode_envelope
from workers.reporter import ShardCounters, snapshot


def event(name: str, d: Any, seq: int = 1) -> Event:
    return Event(0, seq, name, msgspec.Raw(msgspec.json.encode(d)))


def corpus_dispatches(events: int, seed: int) -> list[Event]:
    messages, _, _ = corpus.generate_messages(events, seed=seed, guild_sizes=(50_000,))
    out = []
    for raw in messages:
        env = decode_envelope(raw)
        if env.op == 0 and env.t is not None:
            out.append(Event(0, env.s, env.t, env.d))
    return out


# ---- the benchmark corpus


def test_every_event_type_of_the_corpus_decodes_into_its_model() -> None:
    seen: dict[str, int] = {}
    for e in corpus_dispatches(3000, corpus.DEFAULT_SEED):
        assert isinstance(e.model(), EVENT_MODELS[e.name]), e.name
        seen[e.name] = seen.get(e.name, 0) + 1
    # The table covers every kind the corpus generates, Hello's READY and GUILD_CREATE too.
    assert set(seen) == {"READY", "GUILD_CREATE"} | {kind for kind, _ in corpus._MIX}


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_corpus_events_of_any_seed_decode(seed: int) -> None:
    for e in corpus_dispatches(150, seed):
        assert e.model() is not None


# ---- Discord's documented examples


def test_the_docs_message_decodes_with_int_snowflakes_and_datetime_timestamps() -> None:
    m = event("MESSAGE_CREATE", docs.MESSAGE).model()
    assert isinstance(m, MessageCreate)
    assert m.id == 334385199974967042
    assert m.channel_id == 290926798999357250
    assert m.author.id == 53908099506183680
    assert m.author.username == "Mason"
    assert m.timestamp == datetime(2017, 7, 11, 17, 27, 7, 299000, tzinfo=UTC)
    assert m.content == "Supa Hot"
    assert m.reactions != msgspec.UNSET
    assert m.reactions[0].emoji.name == "🔥"
    assert m.reactions[0].emoji.id is None


def test_an_absent_field_is_unset_and_a_null_one_is_none() -> None:
    m = event("MESSAGE_CREATE", docs.MESSAGE).model()
    assert m.edited_timestamp is None  # sent as null
    assert m.webhook_id is msgspec.UNSET  # not sent
    assert m.author.global_name is msgspec.UNSET
    assert m.guild_id is msgspec.UNSET


def test_the_docs_crossposted_message_keeps_its_reference_and_channel_mentions() -> None:
    m = event("MESSAGE_UPDATE", docs.CROSSPOSTED_MESSAGE).model()
    assert m.flags == 2
    assert m.message_reference.message_id == 306588351130107906
    assert m.mention_channels[0].name == "big-news"


def test_the_docs_slash_command_interaction_decodes_its_options() -> None:
    i = event("INTERACTION_CREATE", docs.SLASH_COMMAND_INTERACTION).model()
    assert isinstance(i, Interaction)
    assert i.data.name == "cardsearch"
    assert i.data.id == 771825006014889984
    assert [(o.name, o.type, o.value) for o in i.data.options] == [
        ("cardname", 3, "The Gitrog Monster")
    ]
    assert i.member.user.id == 53908232506183680
    assert i.member.permissions == 2147483647
    assert i.app_permissions == 442368
    assert i.application_id is msgspec.UNSET


def test_the_docs_user_command_interaction_resolves_users_and_members_by_int_id() -> None:
    i = event("INTERACTION_CREATE", docs.USER_COMMAND_INTERACTION).model()
    target = i.data.target_id
    assert target == 809850198683418695
    assert i.data.resolved.users[target].username == "VoltyDemo"
    member = i.data.resolved.members[target]
    assert isinstance(member, Member)
    assert member.user is msgspec.UNSET  # resolved members carry their user beside them
    assert member.joined_at == datetime(2021, 2, 12, 18, 25, 7, 972000, tzinfo=UTC)


def test_the_docs_message_command_interaction_resolves_the_message() -> None:
    i = event("INTERACTION_CREATE", docs.MESSAGE_COMMAND_INTERACTION).model()
    message = i.data.resolved.messages[i.data.target_id]
    assert isinstance(message, Message)
    assert message.content == "some message"


def test_the_docs_guild_decodes_as_guild_update() -> None:
    g = event("GUILD_UPDATE", docs.GUILD).model()
    assert isinstance(g, Guild)
    assert g.id == 197038439483310086
    assert g.owner_id == 73193882359173120
    assert g.application_id is None
    assert g.rules_channel_id == 441688182833020939
    assert "COMMUNITY" in g.features


def test_an_unavailable_guild_decodes_as_guild_create() -> None:
    g = event("GUILD_CREATE", docs.UNAVAILABLE_GUILD).model()
    assert isinstance(g, GuildCreate)
    assert g.unavailable is True
    assert g.name is msgspec.UNSET


def test_the_docs_member_and_channel_decode_in_their_events() -> None:
    member = event("GUILD_MEMBER_ADD", {**docs.GUILD_MEMBER, "guild_id": "1"}).model()
    assert member.nick == "NOT API SUPPORT"
    assert member.guild_id == 1
    channel = event("CHANNEL_CREATE", docs.TEXT_CHANNEL).model()
    assert channel.parent_id == 399942396007890945
    assert channel.topic == "24/7 chat about how to gank Mike #2"


def test_typing_start_unix_seconds_become_a_datetime() -> None:
    t = event("TYPING_START", {"channel_id": "1", "user_id": "2", "timestamp": 1700000000}).model()
    assert isinstance(t, TypingStart)
    assert t.timestamp == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_unknown_fields_are_ignored() -> None:
    m = event("MESSAGE_CREATE", {**docs.MESSAGE, "brand_new_field": {"x": [1, 2]}}).model()
    assert m.content == "Supa Hot"


# ---- Event.model()


def test_an_event_type_without_a_model_has_none_and_keeps_data() -> None:
    e = event("GUILD_BAN_ADD", {"guild_id": "1", "user": docs.MESSAGE["author"]})
    assert e.model() is None
    assert e.data()["guild_id"] == "1"


def test_the_model_is_decoded_once_and_cached() -> None:
    e = event("MESSAGE_CREATE", docs.MESSAGE)
    assert e.model() is e.model()


def test_a_wrong_field_type_raises_model_error_naming_the_field() -> None:
    bad = {**docs.MESSAGE, "author": {**docs.MESSAGE["author"], "id": "not-a-snowflake"}}
    with pytest.raises(ModelError, match=r"MESSAGE_CREATE .*MessageCreate.*\$\.author\.id"):
        event("MESSAGE_CREATE", bad).model()


# ---- typed handler methods

BAD_MESSAGE = {**docs.MESSAGE, "content": 42}


class TypedBot:
    def __init__(self) -> None:
        self.got: list[object] = []

    async def on_message_create(self, message: MessageCreate) -> None:
        self.got.append(message)

    async def on_guild_update(self, guild: Guild) -> None:
        self.got.append(guild)

    async def on_message_delete(self, event: Event) -> None:
        self.got.append(event)

    async def on_typing_start(self, event) -> None:  # type: ignore[no-untyped-def]
        self.got.append(event)


async def test_a_method_annotated_with_a_model_receives_the_model() -> None:
    bot = TypedBot()
    h = Handler(bot)
    await h.handle(event("MESSAGE_CREATE", docs.MESSAGE))
    await h.handle(event("GUILD_UPDATE", docs.GUILD))
    assert isinstance(bot.got[0], MessageCreate)
    assert isinstance(bot.got[1], Guild)


async def test_a_method_annotated_with_event_or_nothing_receives_the_event() -> None:
    bot = TypedBot()
    h = Handler(bot)
    await h.handle(event("MESSAGE_DELETE", {"id": "1", "channel_id": "2"}))
    await h.handle(event("TYPING_START", {"channel_id": "1", "user_id": "2", "timestamp": 1}))
    assert all(isinstance(got, Event) for got in bot.got)


async def test_a_payload_that_does_not_fit_reaches_the_typed_method_raw_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = TypedBot()
    counters = ShardCounters()
    d = Delivery(0, Handler(bot), counters)
    task = asyncio.ensure_future(d.run())
    with caplog.at_level(logging.WARNING):
        d.push(event("MESSAGE_CREATE", BAD_MESSAGE, seq=1))
        d.push(event("MESSAGE_CREATE", BAD_MESSAGE, seq=2))
        d.push(event("MESSAGE_CREATE", docs.MESSAGE, seq=3))
        async with asyncio.timeout(5):
            await d.wait_idle()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [type(got) for got in bot.got] == [Event, Event, MessageCreate]
    assert counters.model_errors == 2
    assert counters.handler_errors == 0
    assert d.checkpoint == (0, 3)
    warnings = [r for r in caplog.records if "does not fit its model" in r.getMessage()]
    assert len(warnings) == 1  # once per event type, not per payload


async def test_a_handler_calling_model_on_a_payload_that_does_not_fit_counts_it() -> None:
    async def handler(e: Event) -> None:
        e.model()

    counters = ShardCounters()
    d = Delivery(0, Handler(handler), counters)
    task = asyncio.ensure_future(d.run())
    d.push(event("MESSAGE_CREATE", BAD_MESSAGE))
    async with asyncio.timeout(5):
        await d.wait_idle()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert counters.model_errors == 1
    assert counters.handler_errors == 1


def test_a_model_the_event_never_decodes_to_is_refused_at_load() -> None:
    class Confused:
        async def on_message_create(self, guild: Guild) -> None: ...

    with pytest.raises(HandlerLoadError, match="on_message_create takes Guild, but "):
        Handler(Confused(), "bot:Confused")


def test_a_model_on_an_event_without_a_model_is_refused_at_load() -> None:
    class Hopeful:
        async def on_guild_ban_add(self, ban: Member) -> None: ...

    with pytest.raises(HandlerLoadError, match="GUILD_BAN_ADD events have no model"):
        Handler(Hopeful(), "bot:Hopeful")


def test_a_base_model_annotation_is_accepted() -> None:
    class Broad:
        async def on_message_update(self, message: Message) -> None: ...

    Handler(Broad())


async def test_annotations_are_read_at_load_not_per_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    real = typing.get_type_hints

    def counting(obj: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(typing, "get_type_hints", counting)
    h = Handler(TypedBot())
    at_load = calls
    assert at_load > 0
    for seq in range(50):
        await h.handle(event("MESSAGE_CREATE", docs.MESSAGE, seq))
    assert calls == at_load


# ---- the counter reaches the supervisor


def test_model_errors_reach_the_supervisor_metric() -> None:
    class Source:
        shard_id = 2
        counters = ShardCounters()
        backlog = 0
        guilds = 0

        def checkpoint_session(self) -> ipc.SessionInfo | None:
            return None

    source = Source()
    source.counters.model_errors = 3
    [stats] = snapshot([source])
    assert stats.model_errors == 3
    metrics = Metrics()
    metrics.set_plan(4, {1: [2, 3]})
    metrics.on_worker_message(1, ipc.Stats(gen=1, shards=[stats]))
    s = scrape(metrics)
    assert value(s, "shardmgr_shard_model_errors_total", shard="2", worker="1") == 3
