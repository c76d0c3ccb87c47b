"""The worker's end of the supervisor pipe: identify permits and reports over IPC, pings,
commands and shutdown. Everything sent carries the ``gen`` from ``Start``."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import functools
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import assert_never

import msgspec

from workers import ipc, logsetup, redact
from workers.cluster import CallServer, Cluster
from workers.commands import QueueFull, ShardClosed
from workers.events import Event
from workers.handlercheck import start_failure
from workers.handlers import Handler, HandlerLoadError, load_handler
from workers.inflight import InFlightFile
from workers.permits import PermitRefused
from workers.rest.limiter import RemoteCoordinator
from workers.runtime import WorkerRuntime
from workers.watchdog import Watchdog

log = logging.getLogger(__name__)


class IpcChannel:
    """Frames out to the supervisor. Writes are buffered by the transport, so reporting
    never blocks a shard; a closed pipe makes every later send a no-op."""

    def __init__(self, writer: asyncio.StreamWriter, gen: int) -> None:
        self._writer = writer
        self.gen = gen
        self.closed = False

    def send(self, msg: ipc.ToSupervisor) -> None:
        if self.closed or self._writer.is_closing():
            return
        try:
            self._writer.write(ipc.frame(msg))
        except (ConnectionError, RuntimeError):
            self.closed = True

    async def drain(self) -> None:
        if self.closed:
            return
        try:
            await self._writer.drain()
        except (ConnectionError, RuntimeError):
            self.closed = True


class IpcPermits:
    """``IdentifyPermit`` granted by the supervisor: request with a nonce, wait for the
    grant or refusal; a cancelled wait tells the supervisor to free the place. A grant is
    then reported sent (``IdentifySent``) or released (``IdentifyRelease``) with its nonce."""

    def __init__(self, channel: IpcChannel) -> None:
        self._channel = channel
        self._nonces = itertools.count(1)
        self._pending: dict[int, asyncio.Future[None]] = {}
        # shard -> nonce of its grant not yet reported sent or released
        self._granted: dict[int, int] = {}

    async def acquire(self, shard_id: int) -> None:
        nonce = next(self._nonces)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[nonce] = future
        gen = self._channel.gen
        self._channel.send(ipc.IdentifyRequest(gen=gen, shard_id=shard_id, nonce=nonce))
        try:
            await future
        except asyncio.CancelledError:
            # Also when the grant raced the cancellation: it will not be used, and the
            # supervisor holds its bucket until told so.
            self._channel.send(ipc.IdentifyRelease(gen=gen, shard_id=shard_id, nonce=nonce))
            raise
        finally:
            self._pending.pop(nonce, None)
        self._granted[shard_id] = nonce

    def sent(self, shard_id: int) -> None:
        self._settle(shard_id, ipc.IdentifySent)

    def release(self, shard_id: int) -> None:
        self._settle(shard_id, ipc.IdentifyRelease)

    def _settle(
        self, shard_id: int, report: type[ipc.IdentifySent] | type[ipc.IdentifyRelease]
    ) -> None:
        nonce = self._granted.pop(shard_id, None)
        if nonce is not None:
            self._channel.send(report(gen=self._channel.gen, shard_id=shard_id, nonce=nonce))

    def granted(self, nonce: int) -> None:
        future = self._pending.get(nonce)
        if future is not None and not future.done():
            future.set_result(None)

    def refused(self, nonce: int, reason: str) -> None:
        future = self._pending.get(nonce)
        if future is not None and not future.done():
            future.set_exception(PermitRefused(reason))

    def fail_all(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(PermitRefused(reason))


class IpcReporter:
    """``Reporter`` whose every call becomes one IPC message (stats are already batched
    by the collector)."""

    def __init__(self, channel: IpcChannel, loop_lag: Callable[[], float] | None = None) -> None:
        self._channel = channel
        self._loop_lag = loop_lag

    def state_changed(self, shard_id: int, state: ipc.ShardState) -> None:
        self._channel.send(
            ipc.ShardStateChanged(
                gen=self._channel.gen, shard_id=shard_id, state=state, at=time.time()
            )
        )

    def session_started(
        self, shard_id: int, kind: str, session: ipc.SessionInfo, guilds: int
    ) -> None:
        self._channel.send(
            ipc.SessionStarted(
                gen=self._channel.gen,
                shard_id=shard_id,
                kind=kind,
                session=session,
                guilds=guilds,
                at=time.time(),
            )
        )

    def reconnecting(
        self,
        shard_id: int,
        reason: ipc.Reason,
        close_code: int | None,
        resume: bool,
        delay_s: float,
    ) -> None:
        self._channel.send(
            ipc.Reconnecting(
                gen=self._channel.gen,
                shard_id=shard_id,
                reason=reason,
                close_code=close_code,
                resume=resume,
                delay_s=delay_s,
            )
        )

    def stopped(
        self,
        shard_id: int,
        reason: str,
        close_code: int | None,
        fatal: bool,
        session: ipc.SessionInfo | None,
    ) -> None:
        self._channel.send(
            ipc.ShardStopped(
                gen=self._channel.gen,
                shard_id=shard_id,
                reason=reason,
                close_code=close_code,
                fatal=fatal,
                session=session,
            )
        )

    def stats(self, shards: list[ipc.ShardStats], rss_bytes: int, cpu_seconds: float) -> None:
        self._channel.send(
            ipc.Stats(
                gen=self._channel.gen,
                shards=shards,
                rss_bytes=rss_bytes,
                cpu_seconds=cpu_seconds,
                loop_lag_s=self._loop_lag() if self._loop_lag is not None else 0.0,
            )
        )


class WorkerProcess:
    """Serves one supervisor pipe: Start, then pings, permits, commands, until Shutdown
    or EOF."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.runtime: WorkerRuntime | None = None
        self._channel: IpcChannel | None = None
        self._permits: IpcPermits | None = None
        self._rest: RemoteCoordinator | None = None
        self._cluster: Cluster | None = None
        self._calls: CallServer | None = None
        self._shutdown: asyncio.Task[None] | None = None
        self._finished = asyncio.Event()
        self._replays: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        try:
            first = await ipc.read_to_worker(self._reader)
        except ipc.FrameError as exc:
            log.error("bad first message from supervisor", extra={"error": str(exc)})
            return 2
        if not isinstance(first, ipc.Start):
            log.error("expected Start as the first message", extra={"got": type(first).__name__})
            return 2
        config = first.config
        redact.add_secret(config.token)
        logsetup.configure(config.log_level, config.log_json)
        channel = self._channel = IpcChannel(self._writer, first.gen)
        self._permits = IpcPermits(channel)
        self._rest = RemoteCoordinator(channel.send, first.gen)
        try:
            handler = load_handler(config.handler)
        except HandlerLoadError as exc:
            if first.standby:
                return await self._load_failed(channel, config.handler, str(exc))
            log.error("cannot load handler", extra={"error": str(exc)})
            return 2
        if config.sink_url is not None:
            use_url = getattr(handler.target, "use_url", None)
            if callable(use_url):
                use_url(config.sink_url)
        inflight = _map_inflight(config)
        watchdog = Watchdog(config.loop_stall_s, inflight, [a.shard_id for a in config.shards])
        watchdog.start()
        try:
            return await self._run(first, handler, inflight, watchdog)
        finally:
            await watchdog.stop()
            for task in self._replays:
                task.cancel()
            await asyncio.gather(*self._replays, return_exceptions=True)
            inflight.close()

    async def _run(
        self, first: ipc.Start, handler: Handler, inflight: InFlightFile, watchdog: Watchdog
    ) -> int:
        config = first.config
        channel = self._channel
        assert channel is not None and self._permits is not None
        try:
            cluster = self._cluster = Cluster(channel, config)
            self.runtime = runtime = WorkerRuntime(
                config,
                self._permits,
                IpcReporter(channel, watchdog.take_lag),
                handler,
                rest_coordinator=self._rest,
                cluster=cluster,
                inflight=inflight,
                on_skip=self._dead_lettered,
            )
            self._calls = CallServer(
                channel, config, handler.target, self.runtime.shards, self.runtime.members
            )
            try:
                await runtime.prepare()
            except Exception as exc:
                if not first.standby:
                    raise
                # The traceback is for the developer; the supervisor logs the one ERROR line.
                log.warning("the handler's start() raised", exc_info=True)
                code = await self._load_failed(
                    channel, config.handler, start_failure(config.handler, exc)
                )
                await runtime.stop()
                return code
            assignments = config.shards
            if first.standby:
                channel.send(ipc.Ready(gen=first.gen, pid=os.getpid()))
                activated = await self._wait_for_activate(channel)
                if activated is None:
                    await runtime.stop()
                    await channel.drain()
                    return 0
                assignments = activated
            runtime.start_shards(assignments)
        except (ValueError, msgspec.ValidationError) as exc:
            log.error("invalid worker configuration", extra={"error": str(exc)})
            if self.runtime is not None:
                await self.runtime.stop()
            return 2
        except Exception:
            # e.g. the handler's start() could not reach its backend: exit non-zero and
            # let the supervisor restart us with backoff.
            log.exception("worker failed to start")
            if self.runtime is not None:
                await self.runtime.stop()
            return 1
        channel.send(ipc.Started(gen=first.gen, worker_id=config.worker_id, pid=os.getpid()))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM,):
            loop.add_signal_handler(sig, self._begin_shutdown, True)
        # Ctrl-C reaches the whole process group; the supervisor decides how we stop.
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        try:
            await self._serve(channel)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            loop.remove_signal_handler(signal.SIGINT)
        await channel.drain()
        return 0

    async def _load_failed(self, channel: IpcChannel, path: str, reason: str) -> int:
        channel.send(ipc.LoadFailed(gen=channel.gen, handler=path, reason=reason))
        await channel.drain()
        return 2

    async def _wait_for_activate(self, channel: IpcChannel) -> list[ipc.ShardAssignment] | None:
        """A standby worker's wait for its shards; None: told to stop (or the pipe closed)
        before it got any."""
        while True:
            try:
                msg = await ipc.read_to_worker(self._reader)
            except (ipc.FrameError, ConnectionError) as exc:
                log.error("supervisor pipe broken", extra={"error": str(exc)})
                return None
            match msg:
                case ipc.Activate():
                    return msg.shards
                case ipc.Ping():
                    channel.send(ipc.Pong(gen=channel.gen, nonce=msg.nonce))
                case ipc.Shutdown() | None:
                    return None
                case _:
                    got = type(msg).__name__
                    log.warning("ignoring a message before Activate", extra={"got": got})

    async def _serve(self, channel: IpcChannel) -> None:
        reading = asyncio.ensure_future(self._read_loop(channel))
        finished = asyncio.ensure_future(self._finished.wait())
        try:
            await asyncio.wait((reading, finished), return_when=asyncio.FIRST_COMPLETED)
            if self._shutdown is None:
                # EOF or a broken pipe: the supervisor is gone; keep the sessions so its
                # successor can resume them.
                self._begin_shutdown(True, reply=False)
            assert self._shutdown is not None
            await self._shutdown
        finally:
            reading.cancel()
            finished.cancel()
            await asyncio.gather(reading, finished, return_exceptions=True)

    async def _read_loop(self, channel: IpcChannel) -> None:
        while True:
            try:
                msg = await ipc.read_to_worker(self._reader)
            except (ipc.FrameError, ConnectionError) as exc:
                log.error("supervisor pipe broken", extra={"error": str(exc)})
                return
            if msg is None:
                return
            permits = self._permits
            assert permits is not None
            match msg:
                case ipc.Ping():
                    channel.send(ipc.Pong(gen=channel.gen, nonce=msg.nonce))
                case ipc.IdentifyGrant():
                    permits.granted(msg.nonce)
                case ipc.IdentifyRefused():
                    permits.refused(msg.nonce, msg.reason)
                case ipc.SendCommand():
                    self._command(msg)
                case ipc.RestGlobalGrant() | ipc.RestOwned() | ipc.RestYield():
                    assert self._rest is not None
                    self._rest.deliver(msg)
                case ipc.Shutdown():
                    # Its own task: this loop keeps answering pings while shards close.
                    self._begin_shutdown(msg.keep_sessions)
                case ipc.ReplayEvent():
                    task = asyncio.get_running_loop().create_task(self._replay(msg))
                    self._replays.add(task)
                    task.add_done_callback(self._replays.discard)
                case ipc.Deliver():
                    runtime = self.runtime
                    released, dropped = runtime.deliver(msg.overlap_s) if runtime else (0, 0)
                    channel.send(
                        ipc.Delivering(gen=channel.gen, released=released, dropped=dropped)
                    )
                case ipc.Start() | ipc.Activate():
                    log.warning("ignoring a second Start message")
                case ipc.RunCall():
                    if self._calls is not None:
                        self._calls.serve(msg)
                case ipc.CallReply():
                    if self._cluster is not None:
                        self._cluster.on_reply(msg)
                case _:
                    assert_never(msg)

    def _command(self, msg: ipc.SendCommand) -> None:
        runtime = self.runtime
        shard = runtime.shards.get(msg.shard_id) if runtime else None
        if shard is None:
            log.warning(
                "command for a shard this worker does not run",
                extra={"shard": msg.shard_id, "op": msg.op},
            )
            return
        payload = b'{"op":%d,"d":%s}' % (msg.op, msg.d or b"null")
        channel = self._channel
        assert channel is not None
        try:
            written = shard.queue_raw(payload)
        except QueueFull as exc:
            # The supervisor answers the caller 429: nothing is held here for it.
            channel.send(
                ipc.CommandQueued(
                    gen=channel.gen,
                    shard_id=msg.shard_id,
                    nonce=msg.nonce,
                    queued=False,
                    retry_after_s=exc.retry_after_s,
                )
            )
            return
        except (ValueError, ShardClosed) as exc:
            log.warning(
                "command not sent", extra={"shard": msg.shard_id, "op": msg.op, "error": str(exc)}
            )
            channel.send(
                ipc.CommandQueued(
                    gen=channel.gen, shard_id=msg.shard_id, nonce=msg.nonce, queued=False
                )
            )
            return
        channel.send(
            ipc.CommandQueued(gen=channel.gen, shard_id=msg.shard_id, nonce=msg.nonce, queued=True)
        )
        # A callback, not a task per command: the queue's bound is the only memory held.
        written.add_done_callback(functools.partial(_log_unsent, msg.shard_id, msg.op))

    def _dead_lettered(self, event: Event) -> None:
        """A poison event (``ShardAssignment.skip``) reached the handler's turn: delivered
        past, its payload to the supervisor's dead-letter file."""
        log.error(
            "poison event not handed to the handler: it killed this shard's worker twice; "
            "it goes to the dead letters (shardmgr dead-letters list)",
            extra={"shard": event.shard_id, "seq": event.seq, "event": event.name},
        )
        channel = self._channel
        if channel is not None and event.seq is not None:
            channel.send(
                ipc.DeadLettered(
                    gen=channel.gen,
                    shard_id=event.shard_id,
                    seq=event.seq,
                    t=event.name,
                    d=event.raw,
                )
            )

    async def _replay(self, msg: ipc.ReplayEvent) -> None:
        """A dead letter handed to the handler again (``shardmgr dead-letters replay``)."""
        runtime, channel = self.runtime, self._channel
        assert runtime is not None and channel is not None
        error: str | None = None
        event = Event(msg.shard_id, msg.seq, msg.t, msg.d)
        try:
            await runtime.handler.handle(event)
        except Exception as exc:
            log.exception("replayed event failed", extra={"shard": msg.shard_id, "seq": msg.seq})
            error = f"{type(exc).__name__}: {exc}"
        channel.send(ipc.Replayed(gen=channel.gen, nonce=msg.nonce, error=error))

    def _begin_shutdown(self, keep_sessions: bool, reply: bool = True) -> None:
        if self._shutdown is not None:
            return
        self._shutdown = asyncio.get_running_loop().create_task(
            self._do_shutdown(keep_sessions, reply)
        )

    async def _do_shutdown(self, keep_sessions: bool, reply: bool) -> None:
        runtime, channel = self.runtime, self._channel
        assert runtime is not None and channel is not None
        if keep_sessions:
            sessions = await runtime.suspend()
            if reply:
                channel.send(ipc.Suspended(gen=channel.gen, sessions=sessions))
        else:
            await runtime.stop()
        if self._permits is not None:
            self._permits.fail_all("worker shutting down")
        if self._rest is not None:
            self._rest.fail_all()
        if self._calls is not None:
            await self._calls.aclose()
        if self._cluster is not None:
            self._cluster.fail_all("worker shutting down")
        await channel.drain()
        self._finished.set()


def _log_unsent(shard_id: int, op: int, written: asyncio.Future[None]) -> None:
    if written.cancelled():
        return
    exc = written.exception()
    # A shard that stopped for good fails what it still held; its stop is logged once.
    if exc is not None and not isinstance(exc, ShardClosed):
        log.warning("command not sent", extra={"shard": shard_id, "op": op, "error": str(exc)})


def _map_inflight(config: ipc.WorkerConfig) -> InFlightFile:
    """The supervisor's in-flight file; private memory when it cannot be mapped (the
    supervisor then sees no suspects, which only disables the poison-event skip)."""
    try:
        return InFlightFile(config.inflight_file, len(config.shards))
    except OSError as exc:
        log.error("cannot map the in-flight file", extra={"error": str(exc)})
        return InFlightFile(None, len(config.shards))


async def serve_fd(fd: int) -> int:
    """Entry point: the worker's end of the socketpair is ``fd``."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        return await WorkerProcess(reader, writer).run()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
        sys.stderr.flush()
