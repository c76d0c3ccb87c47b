"""The fake Discord now lives in the top-level ``fakegateway`` package; this name stays
because users import it (``from shardmgr.fakegateway import FakeGateway``)."""

from fakegateway import (
    FAULT_KINDS,
    FakeConfig,
    FakeGateway,
    FakeProcess,
    FakeStartError,
    FaultError,
    bot_id_from_token,
    make_token,
    spawn,
    spawn_async,
)

__all__ = [
    "FAULT_KINDS",
    "FakeConfig",
    "FakeGateway",
    "FakeProcess",
    "FakeStartError",
    "FaultError",
    "bot_id_from_token",
    "make_token",
    "spawn",
    "spawn_async",
]
