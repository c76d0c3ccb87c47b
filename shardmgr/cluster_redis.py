"""Cluster calls across hosts through Redis: the supervisors of one bot reach each
other's workers.

- Directory: the hash ``{shardmgr:<bot id>}:cluster:hosts`` maps each host to its shards
  and workers with the time it last said so; an entry older than ``HOST_TTL_S`` is a host
  that is gone (refreshed every ``HOST_TTL_S / 3``).
- Requests and replies: each supervisor subscribes to ``{shardmgr:<bot id>}:cluster:<host>``.
  A request names the sender's host and a nonce; the receiver routes it to its own workers
  (``ClusterRouter.route``) and publishes the outcomes to the sender's channel.

Everything on the wire is a msgpack ``msgspec.Struct``; undecodable or oversized messages
are dropped and counted. A host that does not answer by the deadline yields one error
per worker the directory lists for it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any, Final

import msgspec

from shardmgr.identify.redisconn import connect
from shardmgr.routing import REPLY_BUDGET, ClusterRouter, fit_reply
from workers import ipc
from workers.cluster import CallError

log = logging.getLogger(__name__)

HOST_TTL_S: Final = 15.0
# Directory reads are cached this long: a shard -> host lookup per command is one dict hit.
DIRECTORY_CACHE_S: Final = 1.0
_FRAMING: Final = 4096


class HostEntry(msgspec.Struct, frozen=True):
    shards: list[int]
    workers: list[int]
    at: float


class RemoteRequest(msgspec.Struct, tag="request", frozen=True, kw_only=True):
    origin: str
    nonce: int
    name: str
    args: bytes
    target: ipc.CallTarget
    timeout_s: float


class RemoteReply(msgspec.Struct, tag="reply", frozen=True, kw_only=True):
    nonce: int
    outcomes: list[ipc.CallOutcome]


_Wire = RemoteRequest | RemoteReply
_decoder: Final[msgspec.msgpack.Decoder[_Wire]] = msgspec.msgpack.Decoder(_Wire)
_entry: Final = msgspec.msgpack.Decoder(HostEntry)
_encode = msgspec.msgpack.encode


class RedisClusterLink:
    """``RemoteLink`` over one Redis: a directory hash and one pub/sub channel per host."""

    def __init__(self, url: str, bot_id: str, host: str, *, socket_timeout_s: float = 5.0) -> None:
        self._url = url
        self._timeout = socket_timeout_s
        self.host = host
        ns = f"{{shardmgr:{bot_id}}}:cluster"
        self._ns = ns
        self._hosts_key = f"{ns}:hosts"
        self._client: Any = None
        self._pubsub: Any = None
        self._router: ClusterRouter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._serving: set[asyncio.Task[None]] = set()
        self._nonces = itertools.count(1)
        self._pending: dict[int, asyncio.Future[list[ipc.CallOutcome]]] = {}
        self._directory: dict[str, HostEntry] = {}
        self._read_at = -DIRECTORY_CACHE_S
        self._subscribed = asyncio.Event()

    def channel(self, host: str) -> str:
        return f"{self._ns}:{host}"

    async def start(self, router: ClusterRouter) -> None:
        self._router = router
        self._client = connect(self._url, socket_timeout_s=self._timeout, what="--identify-limiter")
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(), name="cluster-listen"),
            loop.create_task(self._announce(), name="cluster-announce"),
        ]

    async def aclose(self) -> None:
        for task in [*self._tasks, *self._serving]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._serving, return_exceptions=True)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.hdel(self._hosts_key, self.host)
            with contextlib.suppress(Exception):
                await self._client.aclose()

    # ---------------------------------------------------------------- directory

    def _entry(self) -> HostEntry:
        assert self._router is not None
        slots = self._router.local_slots()
        return HostEntry(
            shards=sorted(s for slot in slots.values() for s in slot.shard_ids),
            workers=sorted(slots),
            at=time.time(),
        )

    async def _announce(self) -> None:
        while True:
            try:
                await self._client.hset(self._hosts_key, self.host, _encode(self._entry()))
            except Exception as exc:
                log.warning("cluster directory update failed", extra={"error": str(exc)[:200]})
            await asyncio.sleep(HOST_TTL_S / 3)

    async def _hosts(self) -> dict[str, HostEntry]:
        now = time.monotonic()
        if now - self._read_at >= DIRECTORY_CACHE_S:
            try:
                raw = await self._client.hgetall(self._hosts_key)
            except Exception as exc:
                log.warning("cluster directory read failed", extra={"error": str(exc)[:200]})
                return self._directory
            fresh: dict[str, HostEntry] = {}
            wall = time.time()
            for key, value in raw.items():
                try:
                    entry = _entry.decode(value)
                except msgspec.DecodeError:
                    continue
                if wall - entry.at <= HOST_TTL_S:
                    fresh[key.decode(errors="replace")] = entry
            self._directory = fresh
            self._read_at = now
        return self._directory

    async def host_for_shard(self, shard_id: int) -> str | None:
        for host, entry in (await self._hosts()).items():
            if host != self.host and shard_id in entry.shards:
                return host
        return None

    async def other_hosts(self) -> list[str]:
        return sorted(h for h in await self._hosts() if h != self.host)

    # ---------------------------------------------------------------- requests

    async def route(
        self, host: str, name: str, args: bytes, target: ipc.CallTarget, timeout_s: float
    ) -> list[ipc.CallOutcome]:
        nonce = next(self._nonces)
        future: asyncio.Future[list[ipc.CallOutcome]] = asyncio.get_running_loop().create_future()
        self._pending[nonce] = future
        request = RemoteRequest(
            origin=self.host, nonce=nonce, name=name, args=args, target=target, timeout_s=timeout_s
        )
        try:
            async with asyncio.timeout(timeout_s + 1.0):
                await self._subscribed.wait()
                await self._client.publish(self.channel(host), _encode(request))
                return await future
        except Exception as exc:
            why = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)[:200]
            return await self._unreachable(host, target, why)
        finally:
            self._pending.pop(nonce, None)

    async def _unreachable(
        self, host: str, target: ipc.CallTarget, why: str
    ) -> list[ipc.CallOutcome]:
        entry = self._directory.get(host)
        if target.worker is not None:
            workers = [target.worker]
        elif target.shard is None and entry is not None:
            workers = entry.workers
        else:
            workers = [-1]
        return [
            ipc.CallOutcome(
                host=host,
                worker=w,
                ok=False,
                error=f"host {host}: {why}",
                reason=CallError.HOST_UNREACHABLE,
            )
            for w in workers
        ]

    async def _listen(self) -> None:
        """Subscribed for good: a Redis outage is retried, and calls to this host fail by
        their deadline meanwhile."""
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed.clear()
                log.warning("cluster channel lost; retrying", extra={"error": str(exc)[:200]})
                await asyncio.sleep(1.0)

    async def _listen_once(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self.channel(self.host))
            self._subscribed.set()
            while True:
                try:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                except TimeoutError:
                    continue
                if msg is not None and msg.get("type") == "message":
                    self._on_wire(msg["data"])
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _on_wire(self, data: bytes) -> None:
        router = self._router
        assert router is not None
        if len(data) > REPLY_BUDGET + _FRAMING:
            router.count(CallError.OVERSIZED)
            return
        try:
            wire = _decoder.decode(data)
        except msgspec.DecodeError:
            router.count(CallError.GARBAGE)
            return
        if isinstance(wire, RemoteReply):
            future = self._pending.get(wire.nonce)
            if future is not None and not future.done():
                future.set_result(wire.outcomes)
            return
        task = asyncio.get_running_loop().create_task(self._serve(wire))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, request: RemoteRequest) -> None:
        router = self._router
        assert router is not None
        target = ipc.CallTarget(shard=request.target.shard, worker=request.target.worker)
        try:
            timeout = min(max(request.timeout_s, 0.001), 600.0)
        except TypeError:
            router.count(CallError.GARBAGE)
            return
        if len(request.args) > router.max_bytes:
            outcomes = [
                ipc.CallOutcome(
                    host=self.host,
                    worker=-1,
                    ok=False,
                    error="arguments exceed call_max_bytes",
                    reason=CallError.OVERSIZED,
                )
            ]
        else:
            outcomes = await router.route_here(request.name, request.args, target, timeout)
        reply = RemoteReply(nonce=request.nonce, outcomes=fit_reply(outcomes))
        try:
            await self._client.publish(self.channel(request.origin), _encode(reply))
        except Exception as exc:
            log.warning("cluster reply not sent", extra={"error": str(exc)[:200]})
