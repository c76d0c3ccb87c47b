"""The ``shardmgr`` contender of the receive benchmark: the worker's real receive path.

A ``workers.shard.Shard`` without a socket, fed the corpus frame by frame through
``Shard.feed`` (inflater -> envelope decode -> state machine -> seq bookkeeping -> handler
backlog), with the shard's own ``Delivery`` task calling a no-op handler and the same
back-pressure step the socket loop takes when the backlog is full. Nothing here copies the
worker's code: a change to the worker's receive path changes this benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from types import ModuleType

from workers import codec, ipc
from workers.events import Event
from workers.handlers import Delivery, Handler
from workers.reporter import ShardCounters
from workers.shard import Shard

try:
    import uvloop

    new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop is a dependency; keep the bench usable
    new_loop = asyncio.new_event_loop


async def _noop(event: Event) -> None:
    return None


class _NoPermits:
    async def acquire(self, shard_id: int) -> None:
        raise AssertionError("a socket-free shard never identifies")


class _NullReporter:
    def state_changed(self, shard_id: int, state: str) -> None:
        pass

    def session_started(
        self, shard_id: int, kind: str, session: ipc.SessionInfo, guilds: int
    ) -> None:
        pass

    def reconnecting(
        self, shard_id: int, reason: str, close_code: int | None, resume: bool, delay_s: float
    ) -> None:
        pass

    def stopped(
        self,
        shard_id: int,
        reason: str,
        close_code: int | None,
        fatal: bool,
        session: ipc.SessionInfo | None,
    ) -> None:
        pass

    def stats(self, shards: list[ipc.ShardStats], rss_bytes: int, cpu_seconds: float) -> None:
        pass


def _config(compress: str) -> ipc.WorkerConfig:
    return ipc.WorkerConfig(
        worker_id=0,
        token="bench",
        gateway_url="ws://127.0.0.1:1",
        num_shards=1,
        shards=[ipc.ShardAssignment(shard_id=0)],
        intents=0,
        compress=compress,
    )


async def _drive(
    config: ipc.WorkerConfig, frames: list[bytes], handler: Callable[[Event], Awaitable[None]]
) -> int:
    delivery = Delivery(0, Handler(handler), ShardCounters(), maxsize=config.handler_backlog)
    shard = Shard(0, config, permits=_NoPermits(), reporter=_NullReporter(), delivery=delivery)
    runner = asyncio.get_running_loop().create_task(delivery.run())
    try:
        feed = shard.feed
        for frame in frames:
            feed(frame)
            if delivery.hold:
                # What the socket loop does when the backlog asks it to hold.
                await shard.give_handler_a_turn()
        await delivery.wait_idle()
        if shard.counters.bad_payloads:
            raise RuntimeError(f"the shard rejected {shard.counters.bad_payloads} messages")
        return delivery.delivered
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


def make_loop(
    compress: str, handler: Callable[[Event], Awaitable[None]] = _noop
) -> Callable[[list[bytes]], int]:
    """A callable that pushes all frames through a fresh shard and returns how many
    dispatches the handler (a no-op unless given) received."""
    config = _config(compress)
    loop = new_loop()

    def run(frames: list[bytes]) -> int:
        return loop.run_until_complete(_drive(config, frames, handler))

    return run


def inflater_module() -> ModuleType:
    """The zlib implementation the worker's zlib-stream inflater uses right now."""
    mod: ModuleType = vars(codec)["zlib"]
    return mod


@contextlib.contextmanager
def zlib_swapped(module: ModuleType) -> Iterator[None]:
    """Run the worker's codec with another zlib-compatible module (same API: decompressobj,
    error), to measure what switching its inflater would gain."""
    namespace = vars(codec)
    saved = namespace["zlib"]
    namespace["zlib"] = module
    try:
        yield
    finally:
        namespace["zlib"] = saved
