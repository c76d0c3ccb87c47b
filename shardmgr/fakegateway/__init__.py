"""The fake Discord now lives in the top-level ``fakegateway`` package; this name stays
because users import it (``from shardmgr.fakegateway import FakeGateway``): it offers
exactly what ``fakegateway`` does."""

from fakegateway import *  # noqa: F403
from fakegateway import __all__ as __all__
