"""One worker OS process: spawn it with its end of a socketpair, talk frames over the pipe,
and kill + reap it (and anything it started) on every path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping

from workers import ipc
from workers.logsetup import fields, forward_stderr

log = logging.getLogger(__name__)


class SpawnedWorker:
    """A worker process the supervisor spawned, and its end of the pipe. ``gen`` stamps every
    message both ways."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        worker_id: int,
        gen: int,
    ) -> None:
        self.proc = proc
        self.worker_id = worker_id
        self.gen = gen
        # The in-flight file of this process (shardmgr.poison): read when it dies.
        self.inflight_file: str | None = None
        self._reader = reader
        self._writer = writer
        # With --log-json the worker's raw output (a traceback before its logging is set up, a
        # faulthandler dump, a handler's print) comes through a pipe and leaves as JSON lines.
        self._output: asyncio.Task[None] | None = None
        if proc.stdout is not None:
            self._output = asyncio.create_task(
                forward_stderr(proc.stdout, worker_id, as_json=True),
                name=f"worker-{worker_id}-output",
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    @classmethod
    async def spawn(
        cls,
        *,
        worker_id: int,
        gen: int,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        log_json: bool = False,
    ) -> SpawnedWorker:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                python,
                "-m",
                "workers",
                "--ipc-fd",
                str(child.fileno()),
                pass_fds=(child.fileno(),),
                # A group of its own, so killing it also kills whatever the handler spawned.
                start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL,
                # Worker output joins the supervisor's log stream (stderr; stdout stays ours for
                # the plan), through a pipe that wraps it as JSON when the logs are JSON.
                stdout=asyncio.subprocess.PIPE if log_json else 2,
                stderr=asyncio.subprocess.STDOUT if log_json else None,
                env=dict(env) if env is not None else None,
            )
        except BaseException:
            parent.close()
            child.close()
            raise
        child.close()
        try:
            reader, writer = await asyncio.open_unix_connection(sock=parent, limit=ipc.MAX_FRAME)
        except BaseException:
            parent.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
        log.debug("worker spawned", extra=fields(worker=worker_id, gen=gen, pid=proc.pid))
        return cls(proc, reader, writer, worker_id=worker_id, gen=gen)

    async def send(self, msg: ipc.ToWorker) -> bool:
        """False if the pipe is gone (the process died); the caller's exit path handles that."""
        if self._writer.is_closing():
            return False
        try:
            self._writer.write(ipc.frame(msg))
            await self._writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def recv(self) -> ipc.ToSupervisor | None:
        """The next message, or None when the pipe closed (or carried garbage: either way the
        process is no longer usable)."""
        try:
            return await ipc.read_to_supervisor(self._reader)
        except (ipc.FrameError, ConnectionError, OSError) as exc:
            log.warning(
                "bad frame from worker; treating it as dead",
                extra=fields(worker=self.worker_id, gen=self.gen, error=exc),
            )
            return None

    def signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def dump_stacks(self) -> None:
        """SIGUSR1 makes the worker's faulthandler write every thread's stack to stderr (our
        log). A stopped process gets SIGCONT as well so the signal is delivered."""
        self.signal(signal.SIGUSR1)
        self.signal(signal.SIGCONT)

    async def wait(self, within_s: float | None = None) -> int | None:
        try:
            return await asyncio.wait_for(self.proc.wait(), within_s)
        except TimeoutError:
            return None

    async def kill(self) -> int:
        """SIGKILL the whole process group and reap the process; idempotent."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        code = await self.proc.wait()
        self.close_pipe()
        await self._drain_output()
        return code

    async def _drain_output(self) -> None:
        """The group is dead, so the pipe reaches EOF at once; the bound only guards against a
        descendant that escaped the group and still holds it."""
        if self._output is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._output), 2.0)
        except TimeoutError:
            self._output.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._output

    async def stop(self, within_s: float) -> int:
        """Wait up to ``within_s`` for a voluntary exit, then kill. Always reaped on return."""
        if await self.wait(within_s) is None:
            log.warning(
                "worker did not exit in time; killing it",
                extra=fields(worker=self.worker_id, gen=self.gen, pid=self.pid),
            )
        # Also sweeps up children the worker left behind in its group.
        return await self.kill()

    def close_pipe(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
