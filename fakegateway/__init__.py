"""A local fake Discord (REST with rate limits, the websocket gateway, fault injection and
ground truth) for tests, benchmarks, the demo, and for bot authors testing their own bots.

It needs neither the supervisor (``shardmgr``) nor the worker's internals: only the wire
vocabulary both sides share (``workers.protocol``), the injectable clock and log helpers."""

from fakegateway.config import FakeConfig, bot_id_from_token, make_token
from fakegateway.faults import FAULT_KINDS, FaultError
from fakegateway.server import FakeGateway
from fakegateway.spawn import FakeProcess, FakeStartError, spawn, spawn_async

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
