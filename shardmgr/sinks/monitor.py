"""The supervisor's view of the redis-stream sink: whether events are being written, for the
metrics, the alerts and ``/readyz``.

The sink itself runs in the workers; rather than a new report from every worker, the
supervisor asks the same Redis every few seconds: can it be reached (with the sink's
credentials), is the writer refusing (the script's short-lived ``<stream>:sink:full``
mark), how long is the stream, and how far behind is each consumer group."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any, Final, Protocol

from redis.exceptions import RedisError

from shardmgr.identify.redisconn import connect, safe_url
from shardmgr.sinks.redis_stream import SinkConfig
from shardmgr.sinks.stream_script import full_key
from workers.clock import REAL_CLOCK, Clock
from workers.logsetup import fields

log = logging.getLogger(__name__)

POLL_INTERVAL_S: Final = 5.0


class SinkMetrics(Protocol):
    def sink_state(self, available: bool, backpressure: bool) -> None: ...
    def sink_stream(self, length: int, groups: dict[str, tuple[float, int]]) -> None: ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SinkMonitor:
    def __init__(
        self,
        url: str,
        metrics: SinkMetrics,
        *,
        interval_s: float = POLL_INTERVAL_S,
        socket_timeout_s: float = 5.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.config = SinkConfig.parse(url)
        self._metrics = metrics
        self._interval_s = interval_s
        self._clock = clock
        self._client: Any = connect(
            self.config.redis_url, socket_timeout_s=socket_timeout_s, what="--sink"
        )
        self.available = True
        self.backpressure = False
        # The consumer group holding the stream back while ``backpressure``.
        self.blocking_group = ""
        self._task: asyncio.Task[None] | None = None

    @property
    def writing(self) -> bool:
        return self.available and not self.backpressure

    def why_not_writing(self) -> str:
        if not self.available:
            return f"the sink's Redis ({safe_url(self.config.redis_url)}) cannot be reached"
        if self.backpressure:
            return (
                f"stream {self.config.stream} is full: consumer group "
                f"{self.blocking_group!r} has not acknowledged its oldest entries"
            )
        return ""

    async def poll(self) -> None:
        """One look at the stream; never raises for a Redis problem (that is the news)."""
        stream = self.config.stream
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.xlen(stream)
                pipe.get(full_key(stream))
                length, holder = await pipe.execute()
            groups = await self._client.xinfo_groups(stream) if length else []
        except RedisError as exc:
            if self.available:
                log.warning(
                    "sink monitor cannot reach the sink's redis",
                    extra=fields(redis=safe_url(self.config.redis_url), error=str(exc)),
                )
            self.available = False
            self._metrics.sink_state(False, self.backpressure)
            return
        self.available = True
        self.backpressure = holder is not None
        self.blocking_group = "" if holder is None else _text(holder)
        self._metrics.sink_state(True, self.backpressure)
        self._metrics.sink_stream(
            int(length),
            {
                _text(g["name"]): (
                    math.nan if g.get("lag") is None else float(g["lag"]),
                    int(g["pending"]),
                )
                for g in groups
            },
        )

    async def _run(self) -> None:
        while True:
            await self.poll()
            await self._clock.sleep(self._interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()
