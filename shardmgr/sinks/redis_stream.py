"""``--sink redis-stream://host:port/db?stream=NAME&maxlen=N``: every dispatch into a Redis
Stream, so bot logic can run as any number of stream consumers on other machines.

Each entry has four fields: ``shard`` and ``seq`` (decimal), ``t`` (the event name) and
``d`` (the dispatch body, the gateway's JSON bytes unchanged). The worker hands this
handler one shard's queued events at a time (``handle_batch``), in order; they go out as
pipelined ``XADD ... MAXLEN ~ N`` commands inside one MULTI/EXEC, so a batch lands whole
and contiguous or not at all. ``handle_batch`` returns only once Redis acknowledged the
batch: the worker's checkpoint then advances (at-least-once delivery).

When Redis is slow or away, ``handle_batch`` waits and retries with capped backoff; the
shard's backlog grows in the worker (and is reported as ``backlog``) while its heartbeats,
which run in their own task, carry on. After a failure whose outcome is unknown (the
connection died after EXEC was sent) the tail of the stream is checked for the batch before
it is sent again, so a retry does not duplicate it.

Configuration comes from ``SHARDMGR_SINK_URL`` (the supervisor sets it from ``--sink``) when
``start()`` runs, so importing this module never needs it. Query parameters: ``stream``
(default ``shardmgr:events``), ``maxlen`` (default 1000000; 0 = unbounded), ``batch``
(XADDs per round trip, default 500).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

import msgspec
from redis.exceptions import RedisError

from shardmgr.errors import UserError
from shardmgr.identify.redisconn import Outage, connect, safe_url
from workers.clock import REAL_CLOCK, Clock
from workers.events import Event
from workers.logsetup import fields

log = logging.getLogger(__name__)

ENV_URL: Final = "SHARDMGR_SINK_URL"
SCHEMES: Final[dict[str, str]] = {"redis-stream": "redis", "rediss-stream": "rediss"}
DEFAULT_STREAM: Final = "shardmgr:events"
DEFAULT_MAXLEN: Final = 1_000_000
DEFAULT_BATCH: Final = 500
# How far back to look for a batch whose EXEC outcome is unknown.
VERIFY_TAIL: Final = 5000
VERIFY_PAGE: Final = 200


class SinkConfig(msgspec.Struct, frozen=True, kw_only=True):
    redis_url: str
    stream: str = DEFAULT_STREAM
    maxlen: int = DEFAULT_MAXLEN
    batch: int = DEFAULT_BATCH

    @classmethod
    def parse(cls, url: str) -> SinkConfig:
        """A ``redis-stream://`` URL; any mistake is a one-line UserError."""
        parts = urlsplit(url)
        scheme = SCHEMES.get(parts.scheme)
        if scheme is None:
            raise UserError(
                f"--sink: {safe_url(url)!r} is not a redis-stream:// URL "
                "(expected redis-stream://host:port/db?stream=NAME&maxlen=N)"
            )
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - {"stream", "maxlen", "batch"})
        if unknown:
            raise UserError(
                f"--sink: unknown parameter(s) {', '.join(unknown)} (known: stream, maxlen, batch)"
            )

        def one(name: str) -> str | None:
            values = query.get(name)
            if not values:
                return None
            if len(values) > 1:
                raise UserError(f"--sink: {name} is given more than once")
            return values[0]

        def number(name: str, default: int, minimum: int) -> int:
            raw = one(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise UserError(f"--sink: {name}={raw!r} is not a whole number") from None
            if value < minimum:
                raise UserError(f"--sink: {name} must be at least {minimum}, not {value}")
            return value

        stream = one("stream")
        if stream is not None and not stream:
            raise UserError("--sink: stream= must not be empty")
        redis_url = urlunsplit((scheme, parts.netloc, parts.path, "", ""))
        return cls(
            redis_url=redis_url,
            stream=stream or DEFAULT_STREAM,
            maxlen=number("maxlen", DEFAULT_MAXLEN, 0),
            batch=number("batch", DEFAULT_BATCH, 1),
        )


def entry(event: Event) -> dict[bytes, bytes]:
    return {
        b"shard": b"%d" % event.shard_id,
        b"seq": b"" if event.seq is None else b"%d" % event.seq,
        b"t": event.name.encode(),
        b"d": event.raw,
    }


class RedisStreamSink:
    """The handler object. One instance per worker process (module attribute ``sink``).

    ``url`` overrides ``SHARDMGR_SINK_URL``; ``on_availability`` is called with False when
    writes start failing and True when they succeed again."""

    def __init__(
        self,
        url: str | None = None,
        *,
        retry_base_s: float = 0.05,
        retry_cap_s: float = 2.0,
        socket_timeout_s: float = 5.0,
        on_availability: Callable[[bool], None] | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self._url = url
        self._clock = clock
        self._socket_timeout_s = socket_timeout_s
        self.config: SinkConfig | None = None
        self._client: Any = None
        self._outage = Outage(
            lost="redis stream sink cannot write; events wait in the shard backlog and are "
            "retried (heartbeats are not affected)",
            still="redis stream sink still cannot write",
            back="redis stream sink writing again",
            retry_base_s=retry_base_s,
            retry_cap_s=retry_cap_s,
            clock=clock,
            on_availability=on_availability,
        )
        # Counters for the worker's reports and for operators poking at a live process.
        self.written = 0
        self.batches = 0
        self.retries = 0
        self.in_flight = 0

    @property
    def redis_available(self) -> bool:
        return self._outage.available

    async def start(self) -> None:
        if self._client is not None:
            return
        url = self._url or os.environ.get(ENV_URL)
        if not url:
            raise UserError(f"the redis-stream sink needs --sink or {ENV_URL}")
        self.config = SinkConfig.parse(url)
        self._client = connect(
            self.config.redis_url, socket_timeout_s=self._socket_timeout_s, what="--sink"
        )
        log.info(
            "publishing dispatches to a redis stream",
            extra=fields(
                redis=safe_url(self.config.redis_url),
                stream=self.config.stream,
                maxlen=self.config.maxlen,
            ),
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def handle_batch(self, events: Sequence[Event]) -> None:
        if self._client is None:
            await self.start()
        assert self.config is not None
        size = self.config.batch
        for offset in range(0, len(events), size):
            await self._deliver(events[offset : offset + size])

    async def handle(self, event: Event) -> None:
        """One event (for callers that do not batch)."""
        await self.handle_batch((event,))

    # ------------------------------------------------------------------ internals

    async def _deliver(self, chunk: Sequence[Event]) -> None:
        maybe_written = False
        self.in_flight = len(chunk)
        try:
            while True:
                try:
                    if maybe_written and await self._already_written(chunk[-1]):
                        break
                    await self._send(chunk)
                    break
                except RedisError as exc:
                    # A connection that died after EXEC was sent leaves the outcome unknown.
                    maybe_written = True
                    self.retries += 1
                    await self._clock.sleep(self._outage.failed(exc))
            self._outage.succeeded()
            self.written += len(chunk)
            self.batches += 1
        finally:
            self.in_flight = 0

    async def _send(self, chunk: Sequence[Event]) -> None:
        assert self.config is not None
        maxlen = self.config.maxlen or None
        stream = self.config.stream
        async with self._client.pipeline(transaction=True) as pipe:
            for event in chunk:
                pipe.xadd(stream, entry(event), maxlen=maxlen, approximate=True)
            await pipe.execute()

    async def _already_written(self, last: Event) -> bool:
        """Whether ``last`` (and with it its whole MULTI/EXEC batch) is in the stream's tail.
        Pages backwards so large bodies are not all fetched at once."""
        assert self.config is not None
        want = entry(last)
        newest = "+"
        seen = 0
        while seen < VERIFY_TAIL:
            rows = await self._client.xrevrange(self.config.stream, max=newest, count=VERIFY_PAGE)
            if not rows:
                return False
            if any(data == want for _, data in rows):
                return True
            seen += len(rows)
            oldest = rows[-1][0]
            newest = "(" + (oldest.decode() if isinstance(oldest, bytes) else str(oldest))
        return False


sink = RedisStreamSink()
