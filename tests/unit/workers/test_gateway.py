"""One worker runtime against the in-process fake gateway: the connection lifecycle,
every recovery path and delivery to the handler."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from shardmgr.fakegateway import FakeGateway, make_token
from tests.doubles import RecordingReporter
from tests.unit.workers.gateway_harness import (
    INTERVAL_S,
    WAIT_S,
    Recorder,
    RecordingPermits,
    connected,
    eventually,
    fake_config,
    running,
    worker_config,
)
from workers.decisions import FATAL_CLOSE_CODES
from workers.ipc import ShardState
from workers.runtime import WorkerRuntime


def contiguous(seqs: list[int | None]) -> bool:
    return seqs == list(range(1, len(seqs) + 1))


def sessions(fg: FakeGateway, shard: int) -> list[dict[str, Any]]:
    return [s for s in fg.sessions() if s["shard_id"] == shard]


async def delivered_everything(fg: FakeGateway, rec: Recorder, shard: int) -> None:
    """Until the handler has seen every seq the fake dispatched in the shard's session."""

    def done() -> bool:
        current = rec.session.get(shard)
        live = [s for s in sessions(fg, shard) if s["session_id"] == current]
        return bool(live) and rec.seqs(shard, current)[-1:] == [live[0]["last_seq"]]

    await rec.wait_for(done)


@pytest.mark.parametrize("compress", ["zlib-stream", "zstd-stream", "none"])
async def test_every_shard_gets_ready_then_its_guilds_in_order(compress: str) -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config(shards=2, event_rate=50)) as fg,
        running(worker_config(fg, shards=2, compress=compress), rec.on_event) as (
            runtime,
            reporter,
        ),
    ):
        await connected(reporter, 2)
        await rec.wait_for(lambda: all(len(rec.events.get(s, [])) > 30 for s in (0, 1)))
        for shard in (0, 1):
            names = rec.names(shard)
            assert names[0] == "READY"
            assert "GUILD_CREATE" in names
            assert contiguous(rec.seqs(shard, rec.session[shard]))
            assert runtime.shards[shard].state is ShardState.CONNECTED
        stats = fg.stats()
        assert stats["identifies"] == 2
        assert stats["heartbeat_acks"] >= 0


async def test_zombie_is_detected_and_resumed_within_two_heartbeat_intervals() -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config(event_rate=0)) as fg,
        running(worker_config(fg), rec.on_event) as (runtime, reporter),
    ):
        await connected(reporter, 1)
        await reporter.wait_for(
            lambda: len(runtime.shards[0].counters.latencies_s) > 0 or bool(reporter.stats_reports)
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        await fg.inject("stall", 0)
        async with asyncio.timeout(10):
            await reporter.wait_for(lambda: any(r.reason == "zombie" for r in reporter.reconnects))
        detected = loop.time() - started
        assert detected <= 2 * INTERVAL_S + 0.1
        async with asyncio.timeout(10):
            await reporter.wait_for(lambda: any(k == "resume" for _, k, *_ in reporter.sessions))
        assert fg.stats()["identifies"] == 1
        zombie = next(r for r in reporter.reconnects if r.reason == "zombie")
        assert zombie.resume
        # closed with a session-keeping code, never 1000/1001
        closes = fg.stats()["client_closes_by_code"]
        assert "1000" not in closes and "1001" not in closes


async def test_op7_resumes_the_same_session() -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config(event_rate=20)) as fg,
        running(worker_config(fg), rec.on_event) as (runtime, reporter),
    ):
        await connected(reporter, 1)
        first = runtime.shards[0].session_id
        await fg.inject("reconnect", 0)
        async with asyncio.timeout(10):
            await reporter.wait_for(lambda: any(k == "resume" for _, k, *_ in reporter.sessions))
        assert runtime.shards[0].session_id == first
        assert [r.reason for r in reporter.reconnects] == ["op7"]
        await delivered_everything(fg, rec, 0)
        assert contiguous(rec.seqs(0, first))


async def test_op9_true_resumes() -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config()) as fg,
        running(worker_config(fg), rec.on_event) as (runtime, reporter),
    ):
        await connected(reporter, 1)
        first = runtime.shards[0].session_id
        await fg.inject("invalid_session", 0, resumable=True)
        async with asyncio.timeout(10):
            await reporter.wait_for(lambda: any(k == "resume" for _, k, *_ in reporter.sessions))
        assert runtime.shards[0].session_id == first
        assert reporter.reconnects[0].reason == "op9"


async def test_op9_false_identifies_afresh_after_one_to_five_seconds() -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config()) as fg,
        running(worker_config(fg), rec.on_event) as (runtime, reporter),
    ):
        await connected(reporter, 1)
        first = runtime.shards[0].session_id
        await fg.inject("invalid_session", 0, resumable=False)
        async with asyncio.timeout(10):
            await reporter.wait_for(lambda: len(reporter.sessions) == 2)
        assert reporter.sessions[1][1] == "identify"
        assert runtime.shards[0].session_id != first
        op9 = reporter.reconnects[0]
        assert (op9.reason, op9.resume) == ("op9", False)
        assert 1.0 <= op9.delay_s <= 5.0


RESUMING = [1000, 1001, 1011, 4000, 4001, 4002, 4005, 4006, 4008, 4999]
NEW_SESSION = [4003, 4007, 4009]
FATAL = sorted(int(c) for c in FATAL_CLOSE_CODES)


@pytest.mark.parametrize("code", RESUMING)
async def test_server_close_code_resumes(code: int) -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config()) as fg,
        running(worker_config(fg), rec.on_event) as (runtime, reporter),
    ):
        await connected(reporter, 1)
        first = runtime.shards[0].session_id
        await fg.inject("close", 0, code=code)
        async with asyncio.timeout(10):
            await reporter.wait_for(lambda: len(reporter.sessions) == 2)
        assert reporter.reconnects[0].close_code == code
        assert reporter.reconnects[0].resume
        # the fake keeps the session after every server close: the worker must resume
        # it, and never identify again
        assert reporter.sessions[1][1] == "resume"
        assert runtime.shards[0].session_id == first
        assert fg.stats()["identifies"] == 1


@pytest.mark.parametrize("code", NEW_SESSION)
async def test_server_close_code_identifies_afresh(code: int) -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config()) as fg,
        running(worker_config(fg), rec.on_event) as (_runtime, reporter),
    ):
        await connected(reporter, 1)
        await fg.inject("close", 0, code=code)
        async with asyncio.timeout(10):
            await reporter.wait_for(lambda: len(reporter.sessions) == 2)
        assert reporter.sessions[1][1] == "identify"
        assert (reporter.reconnects[0].close_code, reporter.reconnects[0].resume) == (
            code,
            False,
        )


@pytest.mark.parametrize("code", FATAL)
async def test_fatal_close_code_stops_the_shard_without_retrying(code: int) -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config(shards=2)) as fg,
        running(worker_config(fg, shards=2), rec.on_event) as (runtime, reporter),
    ):
        await connected(reporter, 2)
        await fg.inject("close", 0, code=code)
        async with asyncio.timeout(10):
            await reporter.wait_for(lambda: bool(reporter.stops))
        stop = reporter.stops[0]
        assert (stop.shard_id, stop.close_code, stop.fatal) == (0, code, True)
        assert stop.reason
        assert runtime.shards[0].state is ShardState.STOPPED
        connections = fg.stats()["connections_total"]
        # the other shard is untouched and keeps heartbeating
        acks = fg.stats()["heartbeat_acks"]
        await fg.wait_for(lambda fg: fg.stats()["heartbeat_acks"] >= acks + 2, WAIT_S)
        assert fg.stats()["connections_total"] == connections
        assert reporter.reconnects == []
        assert runtime.shards[1].state is ShardState.CONNECTED


async def test_resume_replays_missed_events_without_gaps_or_duplicates() -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config(event_rate=200)) as fg,
        running(worker_config(fg), rec.on_event) as (_runtime, reporter),
    ):
        await connected(reporter, 1)
        for _ in range(3):
            before = len(rec.events.get(0, []))
            await fg.inject("cut", 0)
            await rec.wait_for(lambda b=before: len(rec.events.get(0, [])) > b + 50)
        await delivered_everything(fg, rec, 0)
        session = rec.session[0]
        assert contiguous(rec.seqs(0, session))
        assert fg.stats()["identifies"] == 1
        assert [r.reason for r in reporter.reconnects] == ["network"] * 3


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("bad_json", {}),
        ("bad_compression", {}),
        ("oversized", {"bytes": 200_000}),
        ("no_suffix", {}),
    ],
)
async def test_malformed_frames_are_survived_counted_and_resumed(
    kind: str, params: dict[str, Any]
) -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config(event_rate=50)) as fg,
        running(worker_config(fg, max_message_bytes=100_000), rec.on_event) as (runtime, reporter),
    ):
        await connected(reporter, 1)
        await fg.inject(kind, 0, **params)
        async with asyncio.timeout(10):
            await reporter.wait_for(lambda: any(k == "resume" for _, k, *_ in reporter.sessions))
        assert reporter.reconnects[0].reason == "bad_payload"
        await reporter.wait_for(
            lambda: sum(s.bad_payloads for r in reporter.stats_reports for s in r) >= 1
        )
        await delivered_everything(fg, rec, 0)
        seqs = rec.seqs(0, rec.session[0])
        if kind == "oversized":
            # the event itself can never fit: after its replay fails too it is skipped
            # (logged and counted), and nothing else is lost
            missing = set(range(1, seqs[-1] + 1)) - set(seqs)
            assert len(missing) == 1
            assert runtime.shards[0].skipped == 1
            seqs = [s for s in seqs if s not in missing]
            assert seqs == sorted(set(seqs))
        else:
            assert contiguous(seqs)
        assert fg.stats()["identifies"] == 1


async def test_blocked_handler_does_not_stop_heartbeats() -> None:
    rec = Recorder()
    rec.block = asyncio.Event()
    async with (
        FakeGateway(fake_config(event_rate=100)) as fg,
        running(worker_config(fg, handler_backlog=20), rec.on_event) as (runtime, reporter),
    ):
        shard = runtime.shards[0]
        await connected(reporter, 1)
        await rec.wait_for(lambda: bool(rec.events))
        acks = fg.stats()["heartbeat_acks"]
        await fg.wait_for(lambda fg: fg.stats()["heartbeat_acks"] >= acks + 5, WAIT_S)
        assert shard.backlog <= 21
        assert shard.state is ShardState.CONNECTED
        assert reporter.reconnects == []
        rec.block.set()
        rec.block = None
        await delivered_everything(fg, rec, 0)
        assert contiguous(rec.seqs(0, rec.session[0]))


async def test_raising_handler_is_counted_and_the_shard_goes_on() -> None:
    rec = Recorder()
    rec.raise_on = {"GUILD_CREATE"}
    async with (
        FakeGateway(fake_config(event_rate=50)) as fg,
        running(worker_config(fg), rec.on_event) as (runtime, reporter),
    ):
        await connected(reporter, 1)
        await reporter.wait_for(
            lambda: sum(s.handler_errors for r in reporter.stats_reports for s in r) >= 1
        )
        acks = fg.stats()["heartbeat_acks"]
        await fg.wait_for(lambda fg: fg.stats()["heartbeat_acks"] >= acks + 3, WAIT_S)
        await delivered_everything(fg, rec, 0)
        assert runtime.shards[0].state is ShardState.CONNECTED


async def test_send_limiter_holds_commands_while_heartbeats_flow() -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config()) as fg,
        running(worker_config(fg), rec.on_event) as (runtime, reporter),
    ):
        shard = runtime.shards[0]
        await connected(reporter, 1)
        sends = [asyncio.ensure_future(shard.update_presence("online")) for _ in range(130)]
        reserve = shard.limiter.reserve
        await eventually(lambda: shard.limiter.in_window() >= shard.limiter.limit - reserve)
        acks = fg.stats()["heartbeat_acks"]
        await fg.wait_for(lambda fg: fg.stats()["heartbeat_acks"] >= acks + 3, WAIT_S)
        assert shard.limiter.in_window() <= shard.limiter.limit
        assert sum(s.done() for s in sends) < 130
        assert "4008" not in fg.stats()["closes_by_code"]
        assert shard.state is ShardState.CONNECTED
        for s in sends:
            s.cancel()


async def test_identify_waits_for_a_permit_while_heartbeating() -> None:
    gate = asyncio.Event()
    asked = asyncio.Event()

    class GatedPermits:
        async def acquire(self, shard_id: int) -> None:
            asked.set()
            await gate.wait()

        def sent(self, shard_id: int) -> None:
            pass

        def release(self, shard_id: int) -> None:
            pass

    rec = Recorder()
    async with (
        FakeGateway(fake_config()) as fg,
        running(worker_config(fg), rec.on_event, permits=GatedPermits()) as (runtime, reporter),
    ):
        async with asyncio.timeout(5):
            await asked.wait()
        assert runtime.shards[0].state is ShardState.WAITING_PERMIT
        await fg.wait_for(lambda fg: fg.stats()["heartbeat_acks"] >= 3, WAIT_S)
        assert fg.stats()["identifies"] == 0
        gate.set()
        await connected(reporter, 1)


async def test_permit_hears_of_the_identify_only_after_the_gateway_answered_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []
    reported = asyncio.Event()
    real_send_frame = aiohttp.ClientWebSocketResponse.send_frame

    async def spy(self: aiohttp.ClientWebSocketResponse, data: bytes, *args: Any) -> None:
        await real_send_frame(self, data, *args)
        if b'"op":2' in data:
            log.append("identify written")

    class ReportingPermits(RecordingPermits):
        def sent(self, shard_id: int) -> None:
            log.append(f"sent, gateway had read {fg.stats()['identifies']}")
            reported.set()

    monkeypatch.setattr(aiohttp.ClientWebSocketResponse, "send_frame", spy)
    rec = Recorder()
    async with (
        FakeGateway(fake_config()) as fg,
        running(worker_config(fg), rec.on_event, permits=ReportingPermits(log)) as (_, reporter),
    ):
        await connected(reporter, 1)
        async with asyncio.timeout(WAIT_S):
            await reported.wait()
        assert log == ["granted", "identify written", "sent, gateway had read 1"]


async def test_an_identify_the_gateway_closes_on_is_reported_once_the_socket_is_gone() -> None:
    permits = RecordingPermits()
    rec = Recorder()
    async with FakeGateway(fake_config()) as fg:
        cfg = worker_config(fg, token=make_token(secret="a revoked token"))
        runtime = WorkerRuntime(cfg, permits, RecordingReporter(), rec.on_event)
        await runtime.start()
        try:
            # 4004: fatal, so the shard stops after this one connection.
            await fg.wait_for(lambda fg: "4004" in fg.stats()["closes_by_code"], WAIT_S)
            await eventually(lambda: permits.log == ["granted", "sent"])
        finally:
            await runtime.stop()


async def test_resume_never_asks_for_a_permit() -> None:
    asked: list[int] = []

    class CountingPermits:
        async def acquire(self, shard_id: int) -> None:
            asked.append(shard_id)

        def sent(self, shard_id: int) -> None:
            pass

        def release(self, shard_id: int) -> None:
            pass

    rec = Recorder()
    async with (
        FakeGateway(fake_config()) as fg,
        running(worker_config(fg), rec.on_event, permits=CountingPermits()) as (_runtime, reporter),
    ):
        await connected(reporter, 1)
        await fg.inject("reconnect", 0)
        await reporter.wait_for(lambda: len(reporter.sessions) == 2)
        assert reporter.sessions[1][1] == "resume"
        assert asked == [0]


async def test_suspend_hands_the_session_to_a_new_runtime_that_resumes_it() -> None:
    rec = Recorder()
    async with FakeGateway(fake_config(event_rate=100)) as fg:
        cfg = worker_config(fg)
        first = WorkerRuntime(cfg, _no_permits(), RecordingReporter(), rec.on_event)
        await first.start()
        await rec.wait_for(lambda: len(rec.events.get(0, [])) > 20)
        sessions_out = await first.suspend()
        assert set(sessions_out) == {0}
        handed = sessions_out[0]
        assert handed.seq == rec.events[0][-1][1]  # the checkpoint: last event handled
        assert fg.stats()["client_closes_by_code"].get("1000", 0) == 0

        from workers import ipc

        cfg2 = worker_config(fg, shards=1)
        cfg2 = ipc.WorkerConfig(
            **{f: getattr(cfg2, f) for f in cfg2.__struct_fields__ if f != "shards"},
            shards=[ipc.ShardAssignment(0, handed)],
        )
        async with running(cfg2, rec.on_event) as (runtime, reporter):
            await connected(reporter, 1)
            assert reporter.sessions[0][1] == "resume"
            assert runtime.shards[0].session_id == handed.session_id
            await delivered_everything(fg, rec, 0)
        assert contiguous(rec.seqs(0, handed.session_id))
        assert fg.stats()["identifies"] == 1


async def test_stop_closes_with_1000_and_ends_the_session() -> None:
    rec = Recorder()
    async with FakeGateway(fake_config()) as fg:
        runtime = WorkerRuntime(worker_config(fg), _no_permits(), RecordingReporter(), rec.on_event)
        await runtime.start()
        await rec.wait_for(lambda: bool(rec.events.get(0)))
        await runtime.stop()
        await fg.wait_for(
            lambda fg: fg.stats()["client_closes_by_code"].get("1000", 0) == 1, WAIT_S
        )
        assert all(s["state"] == "ended" for s in fg.sessions())
        assert runtime.shards[0].state is ShardState.STOPPED


async def test_kill_drops_the_connection_and_keeps_the_session_resumable() -> None:
    rec = Recorder()
    async with FakeGateway(fake_config()) as fg:
        reporter = RecordingReporter()
        runtime = WorkerRuntime(worker_config(fg), _no_permits(), reporter, rec.on_event)
        await runtime.start()
        await connected(reporter, 1)
        runtime.shards[0].kill()
        await reporter.wait_for(lambda: bool(reporter.stops))
        assert reporter.stops[0].session is not None
        await fg.wait_for(
            lambda fg: all(s["state"] == "disconnected" for s in fg.sessions()), WAIT_S
        )
        await runtime.stop()


async def test_commands_reach_the_gateway_with_their_documented_payloads() -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config()) as fg,
        running(worker_config(fg), rec.on_event) as (runtime, _reporter),
    ):
        shard = runtime.shards[0]
        await rec.wait_for(lambda: 0 in rec.guilds)
        guild = rec.guilds[0][0]
        async with asyncio.timeout(5):
            await shard.update_presence("idle", [{"name": "tests", "type": 0}])
            await shard.update_voice_state(guild, None, self_mute=True)
            await shard.request_members(guild, query="", limit=0, nonce="n1")
        await rec.wait_for(
            lambda: {"VOICE_STATE_UPDATE", "GUILD_MEMBERS_CHUNK"} <= set(rec.names(0))
        )
        # a malformed payload would have been closed with 4001/4002
        assert fg.stats()["closes_by_code"] == {}
        assert shard.state is ShardState.CONNECTED


def _no_permits() -> Any:
    from workers.permits import InProcessPermits

    return InProcessPermits(window_s=0.1)


async def test_op7_instead_of_hello_reconnects_and_resumes() -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config()) as fg,
        running(worker_config(fg), rec.on_event) as (runtime, reporter),
    ):
        await connected(reporter, 1)
        first = runtime.shards[0].session_id
        await fg.inject("hello_reconnect", None, count=1)
        await fg.inject("cut", 0)
        await reporter.wait_for(lambda: any(k == "resume" for _, k, *_ in reporter.sessions))
        assert [r.reason for r in reporter.reconnects] == ["network", "op7"]
        assert runtime.shards[0].session_id == first


async def test_server_heartbeat_request_is_answered_at_once() -> None:
    rec = Recorder()
    async with (
        FakeGateway(fake_config(heartbeat_interval_s=3.0)) as fg,
        running(worker_config(fg), rec.on_event) as (_runtime, reporter),
    ):
        await connected(reporter, 1)
        await fg.wait_for(lambda fg: fg.stats()["heartbeats"] >= 1, WAIT_S)
        await fg.inject("heartbeat_request", 0)
        # the next scheduled beat is about 3 s away
        async with asyncio.timeout(1):
            await fg.wait_for(lambda fg: fg.stats()["heartbeats"] >= 2, WAIT_S)
        assert reporter.reconnects == []
