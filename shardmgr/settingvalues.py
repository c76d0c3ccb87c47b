"""The typed values behind settings users write as text (or as TOML lists and numbers):
shard ids, the HTTP address, the identify limiter. Parsed once, when settings load; every
parser raises ``ValueError`` with a message that the caller prefixes with the setting's
name as the user wrote it (flag, variable or TOML key)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

import msgspec

# Addresses that mean "every interface" to bind, and that a client cannot connect to.
WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::", ""})
REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")


class ShardIds(msgspec.Struct, frozen=True):
    """The shard ids one host runs: sorted, each once (``"0-15"``, ``"0-3,8"``, ``[0, 1]``)."""

    ids: tuple[int, ...]

    @property
    def first(self) -> int:
        return self.ids[0]

    @property
    def last(self) -> int:
        return self.ids[-1]

    def __str__(self) -> str:
        return ranges_text(self.ids)


def ranges_text(ids: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    parts: list[str] = []
    if not ids:
        return ""
    start = prev = ids[0]
    for sid in [*ids[1:], None]:
        if sid is not None and sid == prev + 1:
            prev = sid
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if sid is not None:
            start = prev = sid
    return ",".join(parts)


def parse_shard_ids(text: str) -> ShardIds:
    """``"A-B"`` (inclusive), ``"A"``, or several of them separated by commas."""
    ids: set[int] = set()
    for part in text.split(","):
        first_s, sep, last_s = part.strip().partition("-")
        try:
            first = int(first_s)
            last = int(last_s) if sep else first
        except ValueError:
            raise ValueError(f"must look like A-B (e.g. 0-15) or A,B,C, not {text!r}") from None
        if first < 0 or last < first:
            raise ValueError(f"{text}: need 0 <= A <= B in each range A-B")
        ids.update(range(first, last + 1))
    return ShardIds(tuple(sorted(ids)))


def join_list(items: Iterable[object]) -> str:
    """A TOML list of names or numbers, as the comma-separated text a flag would carry."""
    out: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ValueError(f"list items must be names or numbers, not {item!r}")
        out.append(str(item))
    return ",".join(out)


class HttpAddress(NamedTuple):
    host: str
    port: int

    @property
    def connect_host(self) -> str:
        """Where a client on this machine reaches a server bound to ``host``."""
        return "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_http_address(text: str) -> HttpAddress:
    host, sep, port_s = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"must look like HOST:PORT (e.g. 127.0.0.1:9191), not {text!r}")
    try:
        port = int(port_s)
    except ValueError:
        raise ValueError(f"port must be a number, not {port_s!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return HttpAddress(host.strip("[]"), port)


class LimiterKind(enum.Enum):
    LOCAL = "local"
    REDIS = "redis"


class LimiterSpec(msgspec.Struct, frozen=True):
    """``--identify-limiter``: this process alone, or a Redis shared by several hosts."""

    kind: LimiterKind
    url: str | None = None


def parse_limiter(text: str) -> LimiterSpec:
    if text == LimiterKind.LOCAL.value:
        return LimiterSpec(LimiterKind.LOCAL)
    if text.startswith(REDIS_SCHEMES):
        return LimiterSpec(LimiterKind.REDIS, text)
    raise ValueError("must be 'local' or a redis:// URL")
