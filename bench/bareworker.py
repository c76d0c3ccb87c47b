"""A worker process run without the supervisor: the benchmark plays the supervisor's part of
the IPC conversation (Start, identify grants in arrival order, pongs) and keeps the worker's
reports. Used for "a worker run alone with the same shards" and for the RSS of workers with
zero shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import Sequence

from bench.procs import BENCH_TOKEN, ROOT
from workers import ipc
from workers.protocol import parse_intents


class BareWorker:
    def __init__(
        self,
        *,
        worker_id: int,
        gateway_url: str,
        num_shards: int,
        shard_ids: Sequence[int],
        compress: str = "zlib-stream",
        handler: str | None = None,
        intents: str = "default",
    ) -> None:
        self.worker_id = worker_id
        self.gen = 1
        cfg: dict[str, object] = {}
        if handler is not None:
            cfg["handler"] = handler
        self.config = ipc.WorkerConfig(
            worker_id=worker_id,
            token=BENCH_TOKEN,
            gateway_url=gateway_url,
            num_shards=num_shards,
            shards=[ipc.ShardAssignment(shard_id=s) for s in shard_ids],
            # The supervisor's default: the fake gateway's traffic mix depends on intents.
            intents=parse_intents(intents),
            compress=compress,
            **cfg,  # type: ignore[arg-type]
        )
        self.proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()
        self.connected: set[int] = set()
        self.all_connected = asyncio.Event()
        self.events: Counter[str] = Counter()
        self.events_flowing = asyncio.Event()
        # (wall time of the newest event, cumulative events) at every stats report: rates
        # are measured between reports, because counts only move when one arrives.
        self.timeline: list[tuple[float, int]] = []
        self.messages = 0
        self.error: str = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, log_path: str | None = None) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Opening a local log file is instant; the loop has nothing else to do yet.
        logf = open(log_path or os.devnull, "ab")  # noqa: SIM115, ASYNC230
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "workers",
                "--ipc-fd",
                str(child.fileno()),
                pass_fds=(child.fileno(),),
                start_new_session=True,
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        finally:
            child.close()
            logf.close()
        self._reader, self._writer = await asyncio.open_unix_connection(
            sock=parent, limit=ipc.MAX_FRAME
        )
        self._send(ipc.Start(gen=self.gen, config=self.config))
        self._task = asyncio.create_task(self._serve())
        if not self.config.shards:
            self.all_connected.set()

    def _send(self, msg: ipc.ToWorker) -> None:
        assert self._writer is not None
        self._writer.write(ipc.frame(msg))

    async def _serve(self) -> None:
        assert self._reader is not None
        want = {a.shard_id for a in self.config.shards}
        try:
            while True:
                msg = await ipc.read_to_supervisor(self._reader)
                if msg is None:
                    return
                self.messages += 1
                if isinstance(msg, ipc.Started):
                    self.started.set()
                elif isinstance(msg, ipc.IdentifyRequest):
                    # The fake gateway in these runs allows every shard to identify at once.
                    self._send(
                        ipc.IdentifyGrant(gen=self.gen, shard_id=msg.shard_id, nonce=msg.nonce)
                    )
                elif isinstance(msg, ipc.SessionStarted):
                    self.connected.add(msg.shard_id)
                    if want <= self.connected:
                        self.all_connected.set()
                elif isinstance(msg, ipc.Stats):
                    last_event = 0.0
                    for shard in msg.shards:
                        self.events.update(shard.events)
                        last_event = max(last_event, shard.last_event_at or 0.0)
                    if last_event:
                        self.timeline.append((last_event, self.event_total))
                    if self.events:
                        self.events_flowing.set()
        except (ipc.FrameError, ConnectionError, OSError) as exc:
            self.error = str(exc)

    @property
    def event_total(self) -> int:
        return sum(self.events.values())

    async def stop(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            with contextlib.suppress(ConnectionError, OSError):
                self._send(ipc.Shutdown(gen=self.gen))
                await self._writer.drain()
        if self.proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()
