"""Session options a worker runs with: payload compression and the heartbeat ACK check."""

from __future__ import annotations

import zlib

import pytest

from shardmgr.fakegateway import FakeGateway
from tests.unit.workers.gateway_harness import (
    connected,
    eventually,
    fake_config,
    running,
    worker_config,
)
from workers.codec import CodecError, PayloadInflater, make_inflater, query_value
from workers.events import Event
from workers.shard import gateway_url


class Names:
    def __init__(self) -> None:
        self.names: list[str] = []

    async def handle_batch(self, events: list[Event]) -> None:
        self.names.extend(e.name for e in events)


def test_payload_inflater_inflates_one_complete_zlib_stream() -> None:
    message = b'{"op":0,"t":"X","s":1,"d":{"k":"' + b"v" * 5000 + b'"}}'
    assert make_inflater("payload", 1 << 20).feed(zlib.compress(message)) == message


def test_payload_inflater_refuses_a_message_above_the_cap() -> None:
    with pytest.raises(CodecError, match="oversized"):
        PayloadInflater(1000).feed(zlib.compress(b"x" * 5000))


def test_payload_inflater_refuses_a_truncated_stream() -> None:
    with pytest.raises(CodecError, match="bad_compression"):
        PayloadInflater(1 << 20).feed(zlib.compress(b"y" * 5000)[:-6])


def test_payload_mode_leaves_the_compress_query_parameter_out() -> None:
    assert query_value("payload") is None
    assert "compress" not in gateway_url("ws://127.0.0.1:1", "payload")


async def test_payload_compression_end_to_end() -> None:
    names = Names()
    # A low threshold so that READY and GUILD_CREATE arrive compressed, small events plain.
    async with (
        FakeGateway(fake_config(payload_compress_threshold=200, guilds=3)) as fg,
        running(worker_config(fg, compress="payload"), names) as (rt, rep),
    ):
        await connected(rep, 1)
        assert fg.identify_log()[-1]["outcome"] == "ok"
        await eventually(lambda: names.names.count("GUILD_CREATE") == 3)
        shard = rt.shards[0]
        assert shard.counters.bad_payloads == 0
        assert fg.sessions()[0]["state"] == "active"
        # The fake compresses only after an Identify with ``compress: true``.
        (conn,) = fg.state.active_connections()
        assert conn.encoder is not None and conn.encoder.payload_zlib


async def test_zombie_connection_reconnects_with_the_ack_check_on() -> None:
    async with (
        FakeGateway(fake_config()) as fg,
        running(worker_config(fg), Names()) as (_, rep),
    ):
        await connected(rep, 1)
        await fg.inject("zombie", 0)
        await eventually(lambda: any(r.reason == "zombie" for r in rep.reconnects))


async def test_zombie_connection_is_kept_with_the_ack_check_off() -> None:
    async with FakeGateway(fake_config()) as fg:
        config = worker_config(fg, check_heartbeat_acks=False)
        async with running(config, Names()) as (_, rep):
            await connected(rep, 1)
            await fg.inject("zombie", 0)
            beats = fg.stats()["heartbeats"]
            # Three unanswered heartbeats: with the check on, the first would reconnect.
            await eventually(lambda: fg.stats()["heartbeats"] >= beats + 3)
            assert rep.reconnects == []
            assert fg.stats()["connections_total"] == 1
