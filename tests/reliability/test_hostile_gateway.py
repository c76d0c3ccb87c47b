"""A hostile gateway (``hostile_gateway``) against a real shard: every misbehaviour is
bounded, counted and survived, and none makes the shard reconnect without end or lose
its place in the session (issue 17, worker side)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from tests.doubles import RecordingReporter
from tests.reliability.hostile_gateway import Conn, HostileGateway, Top, shard_against
from tests.unit.workers.gateway_harness import WAIT_S, eventually
from tests.unit.workers.test_ipc_process import PRESENCE, spawn_worker
from tests.unit.workers.test_ipc_process import config as ipc_config
from workers import ipc
from workers.commands import MAX_QUEUED_COMMANDS, QueueFull
from workers.events import Event
from workers.gateway import Gateway

pytestmark = pytest.mark.integration

FLOOD = 20_000


async def until(reporter: RecordingReporter, check: Any) -> None:
    async with asyncio.timeout(WAIT_S):
        await reporter.wait_for(check)


def bad_payloads(shard: Any) -> int:
    return int(shard.counters.bad_payloads)


async def test_an_op1_flood_keeps_at_most_one_heartbeat_pending() -> None:
    flooded = asyncio.Event()

    async def script(conn: Conn) -> None:
        await conn.handshake()
        for _ in range(FLOOD):
            await conn.send(1)
        flooded.set()

    async with HostileGateway(script) as gw, shard_against(gw) as (shard, reporter):
        most = 0
        async with asyncio.timeout(WAIT_S):
            while not flooded.is_set():
                most = max(most, len(shard.runner._tasks), len(asyncio.all_tasks()))
                await asyncio.sleep(0)
        await gw.wait_for(lambda: gw.heartbeats >= 1)
        # the heartbeater, the command sender, the handshake, one requested beat, and
        # this test's own tasks: a handful, never one per op 1
        assert most < 20
        assert len(shard.runner._tasks) <= 4
        # the send limit (120 a minute) holds the beats, whatever the server asks
        assert gw.heartbeats <= 120
        assert reporter.reconnects == []


@pytest.mark.parametrize("interval_ms", [10**18, 600_001, 50])
async def test_a_hello_interval_outside_the_sane_range_is_refused_counted_and_retried(
    interval_ms: int,
) -> None:
    async def script(conn: Conn) -> None:
        await conn.hello(interval_ms)

    async with HostileGateway(script) as gw, shard_against(gw) as (shard, reporter):
        await until(reporter, lambda: len(reporter.reconnects) >= 2)
        assert {r.reason for r in reporter.reconnects} == {"bad_payload"}
        assert bad_payloads(shard) >= 2
        assert shard.heartbeater is None or shard.heartbeater.interval_s <= 600
        # a refused HELLO is no replayed event: it never counts toward skipping one
        assert shard.skipped == 0 and not shard.session.skip_one


@pytest.mark.parametrize("misbehaviour", ["op7", "no_ack"])
async def test_reconnects_forced_right_after_every_connect_back_off_with_jitter(
    misbehaviour: str,
) -> None:
    async def script(conn: Conn) -> None:
        if misbehaviour == "op7":
            await conn.handshake()
            await conn.send(7)
        else:
            conn.ack = False
            await conn.handshake(interval_ms=100)

    async with (
        HostileGateway(script) as gw,
        shard_against(
            gw, rng=Top(), reconnect_quick_s=0.01, backoff_base_s=0.02, backoff_cap_s=0.5
        ) as (_shard, reporter),
    ):
        await until(reporter, lambda: len(reporter.reconnects) >= 6)
        delays = [round(r.delay_s, 3) for r in reporter.reconnects[:6]]
        # twice at once (Discord may ask twice), then the exponential backoff
        assert delays == [0.01, 0.01, 0.02, 0.04, 0.08, 0.16]
        assert all(r.resume for r in reporter.reconnects)


async def test_a_seq_jump_far_ahead_is_a_bad_payload_and_the_session_resumes_in_place() -> None:
    delivered: list[int | None] = []
    third = asyncio.Event()

    async def handler(event: Event) -> None:
        delivered.append(event.seq)
        if event.seq == 3:
            third.set()

    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.handshake()
            await conn.dispatch()  # seq 2
            await conn.send(0, {}, 2**52, "MESSAGE_CREATE")
            return
        await conn.handshake()
        await conn.dispatch(3)

    async with (
        HostileGateway(script) as gw,
        shard_against(gw, handler=handler) as (shard, reporter),
    ):
        async with asyncio.timeout(WAIT_S):
            await third.wait()
        # (RESUMED, carrying the seq already held, is delivered without one)
        assert [seq for seq in delivered if seq is not None] == [1, 2, 3]
        assert reporter.reconnects[0].reason == "bad_payload"
        assert bad_payloads(shard) == 1
        resume = gw.handshakes[1]
        assert (resume["op"], resume["d"]["seq"]) == (6, 2)


async def test_stop_during_a_connect_that_never_completes_cancels_it_promptly() -> None:
    async with (
        HostileGateway(stall_upgrade=True) as gw,
        shard_against(gw, hello_timeout_s=60.0) as (shard, reporter),
    ):
        async with asyncio.timeout(WAIT_S):
            await gw.attempted.wait()
        # well below the 60 s connect timeout the stop would otherwise wait out
        async with asyncio.timeout(5):
            await shard.stop()
        assert [s.reason for s in reporter.stops] == ["stopped"]


async def test_latency_is_none_after_a_reconnect_until_the_new_connection_is_acked() -> None:
    measured = asyncio.Event()

    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.handshake(interval_ms=100)
            await measured.wait()
            await conn.send(7)
            return
        conn.ack = False
        await conn.handshake(interval_ms=60_000)

    async with HostileGateway(script) as gw, shard_against(gw) as (shard, reporter):
        gateway = Gateway({0: shard}, 1)
        await eventually(lambda: shard.latency_s is not None)
        measured.set()
        await until(reporter, lambda: len(reporter.sessions) == 2)
        assert reporter.sessions[1][1] == "resume"
        assert shard.latency_s is None
        assert gateway.latency(0) is None


async def test_op9_false_reidentifies_after_one_to_five_seconds_not_the_backoff() -> None:
    async def script(conn: Conn) -> None:
        await conn.handshake()
        await conn.send(9, False)

    # a backoff of 20 s (Top: its ceiling), as after a long outage
    async with (
        HostileGateway(script) as gw,
        shard_against(gw, rng=Top(), backoff_base_s=20.0, backoff_cap_s=20.0) as (_, reporter),
    ):
        await until(reporter, lambda: bool(reporter.reconnects))
        op9 = reporter.reconnects[0]
        assert (op9.reason, op9.resume) == ("op9", False)
        assert 1.0 <= op9.delay_s <= 5.0


async def test_the_command_queue_is_bounded_while_the_shard_cannot_send() -> None:
    async with (
        HostileGateway(stall_upgrade=True) as gw,
        shard_against(gw, hello_timeout_s=60.0) as (shard, _reporter),
    ):
        futures = [shard.queue_raw(b'{"op":3,"d":null}') for _ in range(MAX_QUEUED_COMMANDS)]
        with pytest.raises(QueueFull) as full:
            shard.queue_raw(b'{"op":3,"d":null}')
        assert full.value.retry_after_s >= 1
        assert len(shard.commands) == MAX_QUEUED_COMMANDS
        for future in futures:
            future.cancel()


async def test_a_worker_answers_a_command_beyond_its_queue_with_retry_after() -> None:
    async with HostileGateway(stall_upgrade=True) as gw, spawn_worker() as w:
        w.send(ipc.Start(gen=4, config=ipc_config(gw.gateway_url, shards=1)))
        await w.expect(ipc.Started)
        for nonce in range(1, MAX_QUEUED_COMMANDS + 2):
            w.send(ipc.SendCommand(gen=4, shard_id=0, op=3, d=PRESENCE, nonce=nonce))
        answers = [await w.expect(ipc.CommandQueued) for _ in range(MAX_QUEUED_COMMANDS + 1)]
        assert all(isinstance(a, ipc.CommandQueued) for a in answers)
        queued = [a.nonce for a in answers if isinstance(a, ipc.CommandQueued) and a.queued]
        assert queued == list(range(1, MAX_QUEUED_COMMANDS + 1))
        last = answers[-1]
        assert isinstance(last, ipc.CommandQueued)
        assert (last.nonce, last.queued) == (MAX_QUEUED_COMMANDS + 1, False)
        assert last.retry_after_s >= 1


async def test_an_op1_flood_leaves_a_worker_process_within_its_memory_bound() -> None:
    max_message_bytes = 1024 * 1024
    bound = max_message_bytes + 64 * 1024 * 1024

    async def script(conn: Conn) -> None:
        await conn.handshake()
        for _ in range(10 * FLOOD):
            await conn.send(1)
        # read after every op 1 before it: its arrival in the stats ends the flood
        await conn.dispatch(name="TYPING_START")

    base = ipc_config(shards=1)
    config = msgspec.structs.replace(
        base, compress="none", max_message_bytes=max_message_bytes, report_interval_s=0.2
    )
    async with HostileGateway(script) as gw, spawn_worker() as w:
        config = msgspec.structs.replace(config, gateway_url=gw.gateway_url)
        w.send(ipc.Start(gen=4, config=config))
        await w.expect(ipc.Started)
        grant = await w.expect(ipc.IdentifyRequest)
        assert isinstance(grant, ipc.IdentifyRequest)
        w.send(ipc.IdentifyGrant(gen=4, shard_id=0, nonce=grant.nonce))
        most = 0
        async with asyncio.timeout(4 * WAIT_S):
            while True:
                stats = await w.expect(ipc.Stats)
                assert isinstance(stats, ipc.Stats)
                most = max(most, stats.rss_bytes)
                if any("TYPING_START" in s.events or "other" in s.events for s in stats.shards):
                    break
        assert gw.heartbeats <= 120
        assert 0 < most < bound
