"""``!guilds`` and ``!where <guild_id>``: the example bot's questions about the whole bot,
answered from every worker of every host through ``gateway.cluster``.

``examples.pingpong:Bot`` mixes in ``ClusterCommands`` and sends the text
``cluster_reply`` returns as its reply; the functions stay pure text so a test can check
the answer without a REST client."""

from __future__ import annotations

from typing import Protocol

from workers.cluster import ClusterStats, WorkerKey


class _Cluster(Protocol):
    async def stats(self, timeout_s: float | None = None) -> ClusterStats: ...


class _Gateway(Protocol):
    @property
    def cluster(self) -> _Cluster: ...

    def shard_for_guild(self, guild_id: str | int) -> int: ...


WHERE_USAGE = "usage: !where <guild_id>"


def guilds_text(stats: ClusterStats) -> str:
    """``guilds: N``, N the total over every worker that answered (a note says how many
    did not)."""
    text = f"guilds: {stats.guilds}"
    if stats.errors:
        text += f" ({len(stats.errors)} worker(s) did not answer)"
    return text


def where_text(guild_id: int, shard_id: int, stats: ClusterStats) -> str:
    """``guild G: shard S, worker W`` (with the host when the bot spans several)."""
    owner: WorkerKey | None = next(
        (key for key, w in stats.workers.items() if shard_id in w.shards), None
    )
    if owner is None:
        return f"guild {guild_id}: shard {shard_id}, worker unknown (not answering)"
    hosts = {key.host for key in stats.workers}
    where = f"worker {owner.worker}" + (f" on host {owner.host}" if len(hosts) > 1 else "")
    return f"guild {guild_id}: shard {shard_id}, {where}"


def parse_guild_id(arg: str) -> int | None:
    text = arg.strip()
    if not text.isdigit() or len(text) > 20:
        return None
    return int(text)


class ClusterCommands:
    """Mixin: ``await self.cluster_reply(gateway, content)`` is the reply text for a
    cluster command, or None when ``content`` is not one."""

    async def cluster_reply(self, gateway: _Gateway, content: str) -> str | None:
        command, _, arg = content.strip().partition(" ")
        if command == "!guilds":
            return guilds_text(await gateway.cluster.stats())
        if command == "!where":
            guild_id = parse_guild_id(arg)
            if guild_id is None:
                return WHERE_USAGE
            shard_id = gateway.shard_for_guild(guild_id)
            return where_text(guild_id, shard_id, await gateway.cluster.stats())
        return None
