"""``--sink redis-stream://host:port/db?stream=NAME&maxlen=N``: every dispatch into a Redis
Stream, so bot logic can run as any number of stream consumers on other machines.

Each entry has five fields: ``shard`` and ``seq`` (decimal), ``session`` (the gateway
session id: consumers de-duplicate on (session, seq)), ``t`` (the event name) and ``d``
(the dispatch body, the gateway's JSON bytes unchanged). The worker hands this handler one
shard's queued events at a time (``handle_batch``), in order; each chunk of up to ``batch``
events is appended by one atomic script (``stream_script``), so a chunk lands whole and
contiguous or not at all. ``handle_batch`` returns only once Redis acknowledged every chunk:
the worker's checkpoint then advances (at-least-once delivery).

The script never trims an entry a consumer group has not acknowledged. When the stream is
at ``maxlen`` and the groups have acknowledged nothing more, the chunk is refused and
retried with backoff: the shard's backlog fills and the worker stops reading from the
gateway (backpressure), logged once with the group that holds the stream back.

When Redis is slow or away, ``handle_batch`` waits and retries with capped backoff; the
shard's backlog grows in the worker (and is reported as ``backlog``) while its heartbeats,
which run in their own task, carry on. A chunk whose outcome is unknown (the connection
died after the script was sent) is re-sent with the same batch id, which the script
recognizes: no duplicate, and no reading back through the stream.

The URL comes from the supervisor (``use_url``, over IPC) or ``SHARDMGR_SINK_URL`` when
``start()`` runs, so importing this module never needs it. Query parameters: ``stream``
(default ``shardmgr:events``), ``maxlen`` (default 1000000; 0 = unbounded), ``batch``
(events per round trip, default 500), and the TLS parameters of ``redis://`` URLs
(``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ...; see ``shardmgr.redisurl``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Final
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import msgspec
from redis.exceptions import RedisError

from shardmgr.errors import UserError
from shardmgr.identify.redisconn import Outage, connect, safe_url
from shardmgr.redisurl import TLS_PARAMS
from shardmgr.sinks import stream_script
from shardmgr.sinks.stream_script import Outcome
from workers.clock import REAL_CLOCK, Clock
from workers.events import Event
from workers.logsetup import fields

log = logging.getLogger(__name__)

ENV_URL: Final = "SHARDMGR_SINK_URL"
SCHEMES: Final[dict[str, str]] = {"redis-stream": "redis", "rediss-stream": "rediss"}
DEFAULT_STREAM: Final = "shardmgr:events"
DEFAULT_MAXLEN: Final = 1_000_000
DEFAULT_BATCH: Final = 500
SINK_PARAMS: Final = ("stream", "maxlen", "batch")


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
        unknown = sorted(set(query) - {*SINK_PARAMS, *TLS_PARAMS})
        if unknown:
            known = ", ".join((*SINK_PARAMS, *TLS_PARAMS))
            raise UserError(f"--sink: unknown parameter(s) {', '.join(unknown)} (known: {known})")

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
        tls = urlencode([(k, v) for k in TLS_PARAMS if (v := one(k)) is not None])
        redis_url = urlunsplit((scheme, parts.netloc, parts.path, tls, ""))
        return cls(
            redis_url=redis_url,
            stream=stream or DEFAULT_STREAM,
            maxlen=number("maxlen", DEFAULT_MAXLEN, 0),
            batch=number("batch", DEFAULT_BATCH, 1),
        )


def entry(event: Event) -> list[bytes]:
    """The stream entry's field/value pairs, flattened."""
    return [
        b"shard",
        b"%d" % event.shard_id,
        b"seq",
        b"" if event.seq is None else b"%d" % event.seq,
        b"session",
        (event.session_id or "").encode(),
        b"t",
        event.name.encode(),
        b"d",
        event.raw,
    ]


class RedisStreamSink:
    """The handler object. One instance per worker process (module attribute ``sink``).

    ``url`` overrides the supervisor's URL and ``SHARDMGR_SINK_URL``; ``on_availability``
    is called with False when writes start failing and True when they succeed again;
    ``on_backpressure`` with True when the stream refuses writes (full of unacknowledged
    entries) and False when it takes them again."""

    def __init__(
        self,
        url: str | None = None,
        *,
        retry_base_s: float = 0.05,
        retry_cap_s: float = 2.0,
        socket_timeout_s: float = 5.0,
        on_availability: Callable[[bool], None] | None = None,
        on_backpressure: Callable[[bool], None] | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self._url = url
        self._clock = clock
        self._socket_timeout_s = socket_timeout_s
        self.config: SinkConfig | None = None
        self._client: Any = None
        self._script: Any = None
        self._keys: list[str] = []
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
        self._full = Outage(
            lost="redis stream is full of entries a consumer group has not acknowledged; "
            "writes wait and the shards stop reading from the gateway (backpressure)",
            still="redis stream still full; a consumer group is not acknowledging",
            back="redis stream has room again; writing",
            retry_base_s=retry_base_s,
            retry_cap_s=retry_cap_s,
            clock=clock,
            on_availability=None
            if on_backpressure is None
            else lambda room: on_backpressure(not room),
        )
        # Counters for the worker's reports and for operators poking at a live process.
        self.written = 0
        self.batches = 0
        self.retries = 0
        self.refused = 0
        self.duplicates = 0
        self.in_flight = 0

    @property
    def redis_available(self) -> bool:
        return self._outage.available

    @property
    def backpressure(self) -> bool:
        return not self._full.available

    def use_url(self, url: str) -> None:
        """The URL the supervisor hands over in the worker's configuration (not its
        environment, where any process of the user could read the password)."""
        if self._url is None:
            self._url = url

    async def start(self) -> None:
        if self._client is not None:
            return
        url = self._url or os.environ.get(ENV_URL)
        if not url:
            raise UserError(f"the redis-stream sink needs --sink or {ENV_URL}")
        config = self.config = SinkConfig.parse(url)
        self._client = connect(
            config.redis_url, socket_timeout_s=self._socket_timeout_s, what="--sink"
        )
        self._script = self._client.register_script(stream_script.SCRIPT)
        self._keys = stream_script.keys(config.stream)
        log.info(
            "publishing dispatches to a redis stream",
            extra=fields(
                redis=safe_url(config.redis_url), stream=config.stream, maxlen=config.maxlen
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
        assert self.config is not None
        # One id for every try of this chunk: a re-send after a lost reply is recognized.
        args = stream_script.args(
            chunk[0].shard_id, os.urandom(8).hex(), self.config.maxlen, [entry(e) for e in chunk]
        )
        self.in_flight = len(chunk)
        try:
            while True:
                try:
                    reply = stream_script.result(await self._script(keys=self._keys, args=args))
                except RedisError as exc:
                    self.retries += 1
                    await self._clock.sleep(self._outage.failed(exc))
                    continue
                self._outage.succeeded()
                if reply.outcome is not Outcome.FULL:
                    break
                self.refused += 1
                delay = self._full.failed(
                    RuntimeError(f"consumer group {reply.group!r} holds the oldest entry"),
                    stream=self.config.stream,
                    length=reply.count,
                    maxlen=self.config.maxlen,
                    group=reply.group,
                )
                await self._clock.sleep(delay)
            self._full.succeeded(stream=self.config.stream)
            if reply.outcome is Outcome.DUPLICATE:
                self.duplicates += 1
            self.written += len(chunk)
            self.batches += 1
        finally:
            self.in_flight = 0


sink = RedisStreamSink()
