"""The pure parts: tokens, settings validation, buckets, budget, replay buffer, codec."""

from __future__ import annotations

import zlib

import pytest
import zstandard

from fakegateway import FakeConfig, bot_id_from_token, inbound, make_token
from fakegateway.codec import Encoder
from fakegateway.sessions import Budget, IdentifyBuckets, Session
from fakegateway.world import FakeUser, World, shard_for
from tests.unit.fakegateway.client import GatewayClient
from tests.unit.fakegateway.conftest import Factory
from workers import redact
from workers.clock import FakeClock

BOT = FakeUser(1, "bot", "bot", "0" * 32)


def test_make_token_has_discords_shape_and_round_trips_the_bot_id():
    token = make_token(123456789012345678)
    first, second, third = token.split(".")
    assert len(first) >= 18 and len(second) >= 4 and len(third) >= 20
    assert bot_id_from_token(token) == 123456789012345678
    assert redact.redact(f"token={token}") == f"token={redact.REDACTED}"


@pytest.mark.parametrize("bad", ["", "a.b.c", "abc", "MTIz.abcd.efghijklmnopqrstuvwxyz", "x.y"])
def test_malformed_tokens_have_no_bot_id(bad: str):
    assert bot_id_from_token(bad) is None


def test_config_rejects_bad_values_with_the_option_name():
    with pytest.raises(ValueError, match="max_concurrency"):
        FakeConfig(max_concurrency=0)
    with pytest.raises(ValueError, match="token"):
        FakeConfig(token="nope")


def test_guild_count_defaults_to_ten_per_recommended_shard():
    assert FakeConfig(shards=4).guild_count == 40
    assert FakeConfig(shards=4, guilds=7).guild_count == 7


def test_bucket_allows_one_identify_per_window():
    clock = FakeClock()
    buckets = IdentifyBuckets(clock, max_concurrency=2, window_s=5.0)
    assert buckets.try_acquire(0) and buckets.try_acquire(1)
    assert not buckets.try_acquire(2)  # bucket 0 again
    clock._now += 5.0
    assert buckets.try_acquire(2)


def test_budget_spends_then_refills_after_reset_window():
    clock = FakeClock()
    budget = Budget(clock, total=2, remaining=2, reset_after_s=100.0)
    assert budget.spend() and budget.spend() and not budget.spend()
    clock._now += 40.0
    assert budget.snapshot() == {"total": 2, "remaining": 0, "reset_after": 60000}
    clock._now += 60.0
    assert budget.snapshot()["remaining"] == 2


def test_replay_buffer_knows_when_it_cannot_replay():
    session = Session(
        shard_id=0, num_shards=1, intents=1, bot=BOT, replay_buffer=3, now_mono=0.0, identifies=1
    )
    for _ in range(5):
        session.dispatch("X", b"{}")
    assert [s for s, _ in session.replay_after(2) or []] == [3, 4, 5]
    assert session.replay_after(5) == []
    assert session.replay_after(1) is None


def test_dispatch_payload_is_a_complete_gateway_message():
    session = Session(
        shard_id=0, num_shards=1, intents=1, bot=BOT, replay_buffer=3, now_mono=0.0, identifies=1
    )
    seq, payload = session.dispatch("MESSAGE_CREATE", b'{"a":1}')
    assert seq == 1
    assert payload == b'{"t":"MESSAGE_CREATE","s":1,"op":0,"d":{"a":1}}'


def test_zlib_encoder_flushes_each_message_on_one_stream():
    enc = Encoder("zlib-stream")
    inflate = zlib.decompressobj()
    for message in (b'{"op":10}', b'{"op":11}'):
        ((data, binary),) = enc.encode(message)
        assert binary and data.endswith(b"\x00\x00\xff\xff")
        assert inflate.decompress(data) == message


def test_zstd_encoder_keeps_one_frame_open_across_messages():
    enc = Encoder("zstd-stream")
    inflate = zstandard.ZstdDecompressor().decompressobj()
    for message in (b'{"op":10}', b'{"op":11}' * 100):
        ((data, _),) = enc.encode(message)
        assert inflate.decompress(data) == message


def test_world_places_guilds_by_routing_formula():
    world = World(seed=1, guild_count=100)
    for shard in range(4):
        assert all(shard_for(g.id, 4) == shard for g in world.guilds_for(shard, 4))
    assert sum(len(world.guilds_for(s, 4)) for s in range(4)) == 100


async def test_send_limit_window_slides(make_gateway: Factory, http):
    clock = FakeClock()
    fg = await make_gateway(clock=clock, heartbeat_interval_s=1e4)
    client = await GatewayClient.connect(http, fg.gateway_url)
    await client.recv()
    for _ in range(100):
        await client.send(1, None)
    await fg.wait_for(lambda g: g.stats()["heartbeats"] == 100, 5)
    await clock.advance(60.0)
    for _ in range(100):
        await client.send(1, None)
    await fg.wait_for(lambda g: g.stats()["heartbeats"] == 200, 5)
    assert fg.stats()["closes_by_code"] == {}


def _identify(**kw: object) -> inbound.IdentifyIn:
    base: dict[str, object] = {"token": "t", "properties": {}, "intents": 1}
    return inbound.IdentifyIn(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ident", "code"),
    [
        (_identify(), None),
        (_identify(shard=[0]), 4010),
        (_identify(shard=[3, 3]), 4010),
        (_identify(shard=[-1, 3]), 4010),
        (_identify(intents=None), 4013),
        (_identify(intents=1 << 30), 4013),
        (_identify(intents=1 << 8), 4014),
    ],
)
def test_check_identify_picks_discords_close_code(ident: inbound.IdentifyIn, code: int | None):
    config = FakeConfig(privileged_intents=0)
    got = inbound.check_identify(ident, authenticated=True, config=config, guild_count=lambda: 1)
    assert (got[0] if got else None) == code


def test_check_identify_checks_token_first_and_guild_cap_last():
    config = FakeConfig(max_guilds_per_shard=5)
    bad_everything = _identify(shard=[9, 1], intents=None)
    assert inbound.check_identify(
        bad_everything, authenticated=False, config=config, guild_count=lambda: 9
    ) == (4004, b"Authentication failed.")
    too_big = inbound.check_identify(
        _identify(), authenticated=True, config=config, guild_count=lambda: 6
    )
    assert too_big is not None and too_big[0] == 4011
