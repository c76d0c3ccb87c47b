"""``python -m workers --ipc-fd FD`` as a real process, driven over its socketpair."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

from shardmgr.fakegateway import FakeGateway
from tests.unit.workers.gateway_harness import WAIT_S, fake_config
from tests.unit.workers.gateway_harness import worker_config as gateway_worker_config
from workers import ipc

PRESENCE = b'{"since":null,"activities":[],"status":"idle","afk":false}'


@dataclass
class Worker:
    proc: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def send(self, msg: ipc.ToWorker) -> None:
        self.writer.write(ipc.frame(msg))

    async def expect(self, kind: type) -> ipc.ToSupervisor:
        async with asyncio.timeout(10):
            while True:
                msg = await ipc.read_to_supervisor(self.reader)
                assert msg is not None, "worker closed the pipe"
                if isinstance(msg, kind):
                    return msg


def worker_config(fg: FakeGateway, shards: int, **overrides: object) -> ipc.WorkerConfig:
    return gateway_worker_config(fg, shards=shards, **overrides)


def config(gateway_url: str = "ws://127.0.0.1:9", shards: int = 2) -> ipc.WorkerConfig:
    return ipc.WorkerConfig(
        worker_id=3,
        token="secret-token-value",
        gateway_url=gateway_url,
        num_shards=shards,
        shards=[ipc.ShardAssignment(i) for i in range(shards)],
        intents=1,
        backoff_base_s=0.05,
        backoff_cap_s=0.2,
        report_interval_s=0.1,
    )


@contextlib.asynccontextmanager
async def spawn_worker() -> AsyncIterator[Worker]:
    parent, child = socket.socketpair()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers",
        "--ipc-fd",
        str(child.fileno()),
        pass_fds=(child.fileno(),),
        stderr=asyncio.subprocess.PIPE,
    )
    child.close()
    reader, writer = await asyncio.open_connection(sock=parent)
    try:
        yield Worker(proc, reader, writer)
    finally:
        writer.close()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_worker_answers_start_with_started_and_ping_with_pong() -> None:
    async with spawn_worker() as w:
        w.send(ipc.Start(gen=7, config=config()))
        started = await w.expect(ipc.Started)
        assert isinstance(started, ipc.Started)
        assert (started.gen, started.worker_id, started.pid) == (7, 3, w.proc.pid)
        w.send(ipc.Ping(gen=7, nonce=42))
        pong = await w.expect(ipc.Pong)
        assert isinstance(pong, ipc.Pong) and (pong.gen, pong.nonce) == (7, 42)
        w.send(ipc.Shutdown(gen=7))
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 0


async def test_worker_reports_stats_for_all_shards_in_one_message() -> None:
    async with spawn_worker() as w:
        w.send(ipc.Start(gen=1, config=config(shards=3)))
        stats = await w.expect(ipc.Stats)
        assert isinstance(stats, ipc.Stats)
        assert sorted(s.shard_id for s in stats.shards) == [0, 1, 2]
        assert stats.rss_bytes > 0
        w.send(ipc.Shutdown(gen=1))
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 0


async def test_shutdown_keeping_sessions_replies_suspended_then_exits_0() -> None:
    async with spawn_worker() as w:
        w.send(ipc.Start(gen=2, config=config()))
        await w.expect(ipc.Started)
        w.send(ipc.Shutdown(gen=2, keep_sessions=True))
        suspended = await w.expect(ipc.Suspended)
        assert isinstance(suspended, ipc.Suspended) and suspended.gen == 2
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 0


async def test_pipe_eof_makes_the_worker_exit_0() -> None:
    async with spawn_worker() as w:
        w.send(ipc.Start(gen=1, config=config()))
        await w.expect(ipc.Started)
        w.writer.close()
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 0


async def test_unloadable_handler_exits_2_with_one_line_error() -> None:
    async with spawn_worker() as w:
        bad = ipc.WorkerConfig(**{**_fields(config()), "handler": "no.such.module:x"})
        w.send(ipc.Start(gen=1, config=bad))
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 2
        assert w.proc.stderr is not None
        err = (await w.proc.stderr.read()).decode()
        assert "does not import" in err
        assert "Traceback" not in err


def _fields(cfg: ipc.WorkerConfig) -> dict[str, object]:
    return {f: getattr(cfg, f) for f in cfg.__struct_fields__}


async def test_token_never_reaches_stderr() -> None:
    gen = 5
    async with spawn_worker() as w:
        w.send(ipc.Start(gen=gen, config=config()))
        await w.expect(ipc.Reconnecting)  # connection refused, logged
        w.send(ipc.Shutdown(gen=gen))
        async with asyncio.timeout(10):
            await w.proc.wait()
        assert w.proc.stderr is not None
        assert b"secret-token-value" not in await w.proc.stderr.read()


async def test_identify_goes_through_a_permit_over_ipc_and_sessions_are_reported() -> None:
    async with FakeGateway(fake_config()) as fg, spawn_worker() as w:
        cfg = worker_config(fg, shards=1, report_interval_s=0.1)
        w.send(ipc.Start(gen=4, config=cfg))
        request = await w.expect(ipc.IdentifyRequest)
        assert isinstance(request, ipc.IdentifyRequest) and request.shard_id == 0
        assert fg.stats()["identifies"] == 0
        w.send(ipc.IdentifyGrant(gen=4, shard_id=0, nonce=request.nonce))
        started = await w.expect(ipc.SessionStarted)
        assert isinstance(started, ipc.SessionStarted)
        assert (started.gen, started.kind) == (4, "identify")
        assert started.session.session_id == fg.active_sessions()[0]["session_id"]

        before = fg.stats()["payloads_received"]
        w.send(ipc.SendCommand(gen=4, shard_id=0, op=3, d=PRESENCE))
        w.send(ipc.SendCommand(gen=4, shard_id=0, op=3, d=PRESENCE))
        await fg.wait_for(lambda fg: fg.stats()["payloads_received"] >= before + 2, WAIT_S)
        assert fg.stats()["closes_by_code"] == {}

        w.send(ipc.Shutdown(gen=4, keep_sessions=True))
        suspended = await w.expect(ipc.Suspended)
        assert isinstance(suspended, ipc.Suspended)
        assert suspended.sessions[0].session_id == started.session.session_id
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 0
        await fg.wait_for(lambda fg: fg.active_sessions() == {}, WAIT_S)
        assert fg.sessions()[0]["state"] == "disconnected"  # resumable by a successor


async def test_identify_sent_is_reported_with_the_grants_nonce_once_it_went_out() -> None:
    async with FakeGateway(fake_config()) as fg, spawn_worker() as w:
        w.send(ipc.Start(gen=2, config=worker_config(fg, shards=1)))
        request = await w.expect(ipc.IdentifyRequest)
        assert isinstance(request, ipc.IdentifyRequest)
        w.send(ipc.IdentifyGrant(gen=2, shard_id=0, nonce=request.nonce))
        sent = await w.expect(ipc.IdentifySent)
        assert sent == ipc.IdentifySent(gen=2, shard_id=0, nonce=request.nonce)
        await fg.wait_for(lambda fg: fg.stats()["identifies"] == 1, WAIT_S)
        w.send(ipc.Shutdown(gen=2))
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 0


async def test_shutdown_while_waiting_for_a_permit_cancels_the_request() -> None:
    async with FakeGateway(fake_config()) as fg, spawn_worker() as w:
        w.send(ipc.Start(gen=1, config=worker_config(fg, shards=1)))
        request = await w.expect(ipc.IdentifyRequest)
        assert isinstance(request, ipc.IdentifyRequest)
        w.send(ipc.Shutdown(gen=1))
        cancel = await w.expect(ipc.IdentifyRelease)
        assert isinstance(cancel, ipc.IdentifyRelease)
        assert (cancel.shard_id, cancel.nonce) == (0, request.nonce)
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 0


async def test_refused_identify_stops_the_shard_and_reports_why() -> None:
    async with FakeGateway(fake_config()) as fg, spawn_worker() as w:
        w.send(ipc.Start(gen=1, config=worker_config(fg, shards=1)))
        request = await w.expect(ipc.IdentifyRequest)
        assert isinstance(request, ipc.IdentifyRequest)
        w.send(ipc.IdentifyRefused(gen=1, shard_id=0, nonce=request.nonce, reason="budget"))
        stopped = await w.expect(ipc.ShardStopped)
        assert isinstance(stopped, ipc.ShardStopped)
        assert stopped.fatal and "budget" in stopped.reason
        assert fg.stats()["identifies"] == 0
        w.send(ipc.Shutdown(gen=1))
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 0


async def test_given_session_is_resumed_without_asking_for_a_permit() -> None:
    async with FakeGateway(fake_config()) as fg:
        async with spawn_worker() as w:
            w.send(ipc.Start(gen=1, config=worker_config(fg, shards=1)))
            request = await w.expect(ipc.IdentifyRequest)
            assert isinstance(request, ipc.IdentifyRequest)
            w.send(ipc.IdentifyGrant(gen=1, shard_id=0, nonce=request.nonce))
            await w.expect(ipc.SessionStarted)
            w.send(ipc.Shutdown(gen=1, keep_sessions=True))
            suspended = await w.expect(ipc.Suspended)
            assert isinstance(suspended, ipc.Suspended)
        handed = suspended.sessions[0]
        async with spawn_worker() as w2:
            cfg = worker_config(fg, shards=1)
            cfg = ipc.WorkerConfig(
                **{f: getattr(cfg, f) for f in cfg.__struct_fields__ if f != "shards"},
                shards=[ipc.ShardAssignment(0, handed)],
            )
            w2.send(ipc.Start(gen=2, config=cfg))
            started = await w2.expect(ipc.SessionStarted)
            assert isinstance(started, ipc.SessionStarted)
            assert (started.kind, started.session.session_id) == ("resume", handed.session_id)
            assert fg.stats()["identifies"] == 1
            w2.send(ipc.Shutdown(gen=2))
            async with asyncio.timeout(10):
                assert await w2.proc.wait() == 0


async def test_invalid_config_exits_2_with_one_line_error() -> None:
    async with spawn_worker() as w:
        bad = ipc.WorkerConfig(**{**_fields(config()), "zombie_close_code": 1000})
        w.send(ipc.Start(gen=1, config=bad))
        async with asyncio.timeout(10):
            assert await w.proc.wait() == 2
        assert w.proc.stderr is not None
        err = (await w.proc.stderr.read()).decode()
        assert "zombie_close_code" in err
        assert "Traceback" not in err
