"""Real processes for end-to-end tests: the fake gateway and `shardmgr start`, both as
subprocesses on 127.0.0.1, observed through /_fake/* and the supervisor's /status."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from fakegateway import FakeConfig, FakeProcess, spawn_async
from tests.supervisor.conftest import make_token

POLL_S = 0.1


async def _first_line(
    proc: asyncio.subprocess.Process, prefix: str, within_s: float, seen: list[str] | None = None
) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), left)
        except TimeoutError:
            break
        if not raw:
            break
        line = raw.decode().strip()
        if seen is not None:
            seen.append(line)
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting with {prefix!r} within {within_s}s")


async def _drain(stream: asyncio.StreamReader | None, sink: list[str]) -> None:
    if stream is None:
        return
    while raw := await stream.readline():
        sink.append(raw.decode().rstrip())


async def _terminate(proc: asyncio.subprocess.Process, within_s: float = 10.0) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), within_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


class FakeGatewayProc:
    """The fake as a child process (``fakegateway.spawn``) plus an HTTP client for its
    control routes."""

    def __init__(self, fake: FakeProcess, token: str) -> None:
        self.fake = fake
        self.url = fake.url
        self.api_base = fake.api_base
        self.token = token
        # Each request bounded too, so a wedged supervisor cannot outlast a wait deadline.
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    @classmethod
    async def start(
        cls,
        *,
        shards: int,
        max_concurrency: int = 1,
        identify_window_s: float = 0.2,
        heartbeat_interval_s: float = 0.5,
        event_rate: float = 20.0,
        extra: tuple[str, ...] = (),
    ) -> FakeGatewayProc:
        token = make_token()
        config = FakeConfig(
            shards=shards,
            max_concurrency=max_concurrency,
            identify_window_s=identify_window_s,
            heartbeat_interval_s=heartbeat_interval_s,
            event_rate=event_rate,
            token=token,
        )
        return cls(await spawn_async(config, args=extra), token)

    async def stats(self) -> dict[str, Any]:
        async with self.http.get(self.url + "/_fake/stats") as resp:
            resp.raise_for_status()
            doc: dict[str, Any] = await resp.json()
            return doc

    async def sessions(self) -> list[dict[str, Any]]:
        async with self.http.get(self.url + "/_fake/sessions") as resp:
            resp.raise_for_status()
            doc = await resp.json()
            return list(doc["sessions"] if isinstance(doc, dict) else doc)

    async def fault(self, **fault: Any) -> None:
        async with self.http.post(self.url + "/_fake/faults", json=fault) as resp:
            resp.raise_for_status()

    async def rest_fault(self, **fault: Any) -> None:
        async with self.http.post(self.url + "/_fake/rest-faults", json=fault) as resp:
            resp.raise_for_status()

    async def close(self) -> None:
        await self.http.close()
        await self.fake.stop_async()


class SupervisorProc:
    def __init__(
        self, proc: asyncio.subprocess.Process, url: str, stdout: list[str], stderr: Path
    ) -> None:
        self.closed = False
        self.proc = proc
        self.url = url
        self.stdout = stdout
        self.stderr = stderr
        self._drain = asyncio.create_task(_drain(proc.stdout, stdout))
        # Each request bounded too, so a wedged supervisor cannot outlast a wait deadline.
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    @classmethod
    async def start(
        cls,
        fake: FakeGatewayProc,
        tmp: Path,
        *args: str,
        env: dict[str, str] | None = None,
        name: str = "supervisor",
    ) -> SupervisorProc:
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SHARDMGR_") and k != "DISCORD_TOKEN"
        }
        full_env.update(
            DISCORD_TOKEN=fake.token,
            SHARDMGR_STATE_DIR=str(tmp / "state"),
            SHARDMGR_JSONL=str(tmp / "events.jsonl"),
            SHARDMGR_PING_INTERVAL_S="0.25",
            SHARDMGR_PING_TIMEOUT_S="5",
            SHARDMGR_RESTART_BACKOFF_BASE_S="0.1",
            SHARDMGR_SHUTDOWN_TIMEOUT_S="5",
            SHARDMGR_IDENTIFY_WINDOW_S="0.25",
            SHARDMGR_LOG_LEVEL="INFO",
        )
        full_env.update(env or {})
        stderr = tmp / f"{name}.stderr"
        err_fd = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "shardmgr",
                "start",
                "--api-base",
                fake.api_base,
                "--http",
                "127.0.0.1:0",
                # --sink replaces the handler and may not be combined with one
                *(() if "--sink" in args else ("--handler", "shardmgr.handlers:jsonl")),
                *args,
                env=full_env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err_fd,
                start_new_session=True,
            )
        finally:
            os.close(err_fd)
        stdout: list[str] = []
        try:
            line = await _first_line(proc, "http: ", 60.0, stdout)
        except BaseException:
            await _terminate(proc)
            raise AssertionError(stderr.read_text()[-3000:]) from None
        return cls(proc, line.split()[1].removesuffix("/metrics"), stdout, stderr)

    async def status(self) -> dict[str, Any]:
        async with self.http.get(self.url + "/status") as resp:
            resp.raise_for_status()
            doc: dict[str, Any] = await resp.json()
            return doc

    async def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], within_s: float = 60.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within_s
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = await self.status()
            if predicate(doc):
                return doc
            await asyncio.sleep(POLL_S)
        raise AssertionError(
            f"status condition not met in {within_s}s: {json.dumps(doc)[:3000]}\n"
            + self.stderr.read_text()[-3000:]
        )

    async def wait_exit(self, within_s: float = 30.0) -> int:
        return await asyncio.wait_for(self.proc.wait(), within_s)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.http.close()
        await _terminate(self.proc, 20.0)
        self._drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._drain


def all_connected(doc: dict[str, Any]) -> bool:
    shards = doc["shards"]
    return bool(shards) and all(s["state"] == "connected" for s in shards)


async def wait_fake(
    fake: FakeGatewayProc, predicate: Callable[[dict[str, Any]], bool], within_s: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = await fake.stats()
        if predicate(doc):
            return doc
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"fake gateway condition not met in {within_s}s: {doc}")


def delivered_seqs(events_file: Path) -> dict[int, list[int]]:
    by_shard: dict[int, list[int]] = {}
    if not events_file.exists():
        return by_shard
    for line in events_file.read_text().splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        if doc.get("seq") is not None:
            by_shard.setdefault(int(doc["shard"]), []).append(int(doc["seq"]))
    return by_shard


def gaps(seqs: list[int]) -> list[int]:
    """Sequence numbers missing between the first and the last delivered one."""
    have = set(seqs)
    return [s for s in range(min(have), max(have) + 1) if s not in have] if have else []
