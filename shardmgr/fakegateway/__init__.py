"""A local fake Discord gateway (REST discovery + websocket gateway + fault injection) for
tests, benchmarks, the demo, and for bot authors testing their own bots."""

from shardmgr.fakegateway.config import FakeConfig, bot_id_from_token, make_token
from shardmgr.fakegateway.faults import FAULT_KINDS, FaultError
from shardmgr.fakegateway.server import FakeGateway

__all__ = [
    "FAULT_KINDS",
    "FakeConfig",
    "FakeGateway",
    "FaultError",
    "bot_id_from_token",
    "make_token",
]
