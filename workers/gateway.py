"""``Gateway``: what the bot's handler code uses to talk to Discord from inside a worker.

A handler object whose ``start`` takes one parameter receives it as ``start(gateway)``;
anything else running in the worker reaches it through ``current()``. Every method routes
to the shard it names, in this worker or (through the supervisor, ``gateway.cluster``) in
another one; commands queue through that shard's send limiter and survive reconnects (see
``Shard.send_raw``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from workers import commands
from workers.cluster import Cluster, MembersArgs
from workers.members import MemberWaits
from workers.protocol import Op, parse_presence_status

if TYPE_CHECKING:
    from workers.ipc import ShardState
    from workers.rest.client import RestClient
    from workers.shard import Shard

_current: Gateway | None = None


def shard_for_guild(guild_id: str | int, num_shards: int) -> int:
    """Discord's routing rule: ``(guild_id >> 22) % num_shards``."""
    return (int(guild_id) >> 22) % num_shards


class Gateway:
    """The worker's shards as seen by the bot. ``shards`` is the runtime's live mapping."""

    def __init__(
        self,
        shards: Mapping[int, Shard],
        num_shards: int,
        planned: Iterable[int] = (),
        rest: RestClient | None = None,
        cluster: Cluster | None = None,
        members: MemberWaits | None = None,
    ) -> None:
        self._shards = shards
        self.num_shards = num_shards
        # The worker's shards before they exist: the handler's start(gateway) runs first.
        self._planned = frozenset(planned)
        self._rest = rest
        # Other workers' shards and calls, through the supervisor (None: this worker alone).
        self._cluster = cluster
        self._members = members if members is not None else MemberWaits()

    @property
    def rest(self) -> RestClient:
        """Discord's REST API with the bot's token; limits shared by every worker."""
        if self._rest is None:
            raise RuntimeError("no REST client in this gateway")
        return self._rest

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            raise RuntimeError("cluster calls need a worker started by the shardmgr supervisor")
        return self._cluster

    def _remote(self, shard_id: int) -> Cluster | None:
        """The route to ``shard_id`` when another worker runs it (None: it runs here)."""
        if shard_id in self._shards or self._cluster is None:
            return None
        if not 0 <= shard_id < self.num_shards:
            raise LookupError(f"shard {shard_id} is not one of the bot's {self.num_shards}")
        return self._cluster

    @property
    def shard_ids(self) -> list[int]:
        return sorted(self._planned.union(self._shards))

    def shard_for_guild(self, guild_id: str | int) -> int:
        return shard_for_guild(guild_id, self.num_shards)

    def _shard(self, shard_id: int) -> Shard:
        try:
            return self._shards[shard_id]
        except KeyError:
            raise LookupError(
                f"shard {shard_id} does not run in this worker (it runs {self.shard_ids})"
            ) from None

    def _guild_shard(self, guild_id: str | int) -> Shard:
        sid = self.shard_for_guild(guild_id)
        shard = self._shards.get(sid)
        if shard is None:
            raise LookupError(
                f"guild {guild_id} belongs to shard {sid}, which does not run in this worker "
                f"(it runs {self.shard_ids})"
            )
        return shard

    def latency(self, shard_id: int) -> float | None:
        """The last heartbeat round trip in seconds; None until the current connection's
        first ACK (a reconnect forgets the previous connection's)."""
        return self._shard(shard_id).latency_s

    def state(self, shard_id: int) -> ShardState:
        return self._shard(shard_id).state

    async def update_presence(
        self,
        status: str = "online",
        activities: list[dict[str, Any]] | None = None,
        afk: bool = False,
        since: int | None = None,
        shard_id: int | None = None,
    ) -> None:
        """Op 3 on one shard, or on every shard of this worker when ``shard_id`` is None."""
        parse_presence_status(status)
        if shard_id is not None and (cluster := self._remote(shard_id)) is not None:
            payload = commands.presence_update(status, activities, since, afk)
            await cluster.command(shard_id, Op.PRESENCE_UPDATE, _json(payload))
            return
        shards = [self._shard(shard_id)] if shard_id is not None else list(self._shards.values())
        # Concurrently: a shard that is reconnecting must not hold up its healthy siblings.
        await asyncio.gather(
            *(
                shard.update_presence(status=status, activities=activities, since=since, afk=afk)
                for shard in shards
            )
        )

    async def update_voice_state(
        self,
        guild_id: str | int,
        channel_id: str | int | None,
        self_mute: bool = False,
        self_deaf: bool = False,
    ) -> None:
        """Op 4 on the guild's shard (in whichever worker runs it); ``channel_id=None``
        leaves the voice channel."""
        sid = self.shard_for_guild(guild_id)
        if (cluster := self._remote(sid)) is not None:
            payload = commands.voice_state_update(guild_id, channel_id, self_mute, self_deaf)
            await cluster.command(sid, Op.VOICE_STATE_UPDATE, _json(payload))
            return
        await self._guild_shard(guild_id).update_voice_state(
            guild_id, channel_id, self_mute=self_mute, self_deaf=self_deaf
        )

    async def request_members(
        self,
        guild_id: str | int,
        query: str | None = None,
        limit: int = 0,
        presences: bool = False,
        user_ids: list[str | int] | str | int | None = None,
        nonce: str | None = None,
        wait: bool = False,
    ) -> dict[str, list[Any]] | None:
        """Op 8 on the guild's shard: exactly one of ``query`` (with ``limit``) or
        ``user_ids``. ``wait=True`` returns ``{"members", "not_found", "presences"}`` from
        every GUILD_MEMBERS_CHUNK answering it (our own nonce; ``nonce`` must be None)."""
        sid = self.shard_for_guild(guild_id)
        cluster = self._remote(sid)
        if wait:
            if nonce is not None:
                raise ValueError("request_members(wait=True) sets its own nonce")
            ids: list[str | int] | str | None = None
            if isinstance(user_ids, list):
                ids = [str(u) for u in user_ids]
            elif user_ids is not None:
                ids = str(user_ids)
            args = MembersArgs(
                guild_id=str(guild_id), query=query, limit=limit, presences=presences, user_ids=ids
            )
            # Checked here: a bad request fails in the caller, not in the owning worker.
            commands.request_guild_members(guild_id, query, limit, presences, user_ids)
            if cluster is not None:
                result: dict[str, list[Any]] = await cluster.request_members(sid, args)
                return result
            shard = self._guild_shard(guild_id)
            timeout = self._cluster.command_timeout_s if self._cluster is not None else 10.0
            async with asyncio.timeout(timeout):
                return await self._members.request(shard, args)
        if cluster is not None:
            payload = commands.request_guild_members(
                guild_id, query, limit, presences, user_ids, nonce
            )
            await cluster.command(sid, Op.REQUEST_GUILD_MEMBERS, _json(payload))
            return None
        await self._guild_shard(guild_id).request_members(
            guild_id, query=query, limit=limit, presences=presences, user_ids=user_ids, nonce=nonce
        )
        return None

    async def send_packet(self, shard_id: int, op: int | Op, d: Any) -> None:
        """Any client opcode, ``d`` encoded as JSON (for opcodes this API does not wrap)."""
        if (cluster := self._remote(shard_id)) is not None:
            await cluster.command(shard_id, int(op), _json(d))
            return
        await self._shard(shard_id).send_packet(int(op), d)

    async def send_raw(self, shard_id: int, data: bytes) -> None:
        """An already-encoded gateway payload, sent as is."""
        await self._shard(shard_id).send_raw(data)


def _json(d: Any) -> bytes:
    """``d`` as the JSON the owning worker splices into ``{"op":N,"d":...}``."""
    return msgspec.json.encode(d)


def install(gateway: Gateway | None) -> None:
    """Called by the worker runtime: makes ``gateway`` the process's ``current()``."""
    global _current
    _current = gateway


def current() -> Gateway:
    """The worker process's Gateway; RuntimeError anywhere else (e.g. in the supervisor)."""
    if _current is None:
        raise RuntimeError(
            "no gateway here: workers.gateway.current() works only inside a running shardmgr worker"
        )
    return _current
