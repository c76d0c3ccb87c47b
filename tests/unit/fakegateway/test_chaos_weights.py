"""What chaos does by default (what Discord does to a healthy client) and what is opt-in."""

from __future__ import annotations

import pytest

from fakegateway import faults
from tests.unit.fakegateway.client import ready_client
from tests.unit.fakegateway.conftest import Factory
from workers.clock import FakeClock


async def _chaos_run(
    make_gateway: Factory, http, weights: dict[str, int] | None
) -> tuple[set[str], set[str]]:
    """The close codes the server sent and the fault kinds chaos injected over 40
    intervals, a client connecting afresh for each."""
    clock = FakeClock()
    fg = await make_gateway(clock=clock, heartbeat_interval_s=1e4, reconnect_close_after_s=0.0)
    await fg.set_chaos(11, 1.0, weights)
    for _ in range(40):
        client = await ready_client(http, fg)
        await clock.advance(1.5)
        await client.close(4000)
    await fg.set_chaos(None)
    return set(fg.stats()["closes_by_code"]), {e["kind"] for e in fg.fault_log()}


async def test_default_chaos_never_sends_4008_4002_or_op7_for_hello(make_gateway: Factory, http):
    closes, kinds = await _chaos_run(make_gateway, http, None)
    assert "close" in kinds and "reconnect" in kinds
    assert not closes & {"4008", "4002"}
    assert "hello_reconnect" not in kinds


@pytest.mark.parametrize("code", [4008, 4002])
async def test_4008_and_4002_are_opt_in_chaos_weights(make_gateway: Factory, http, code):
    closes, _ = await _chaos_run(make_gateway, http, {f"close_{code}": 1})
    assert str(code) in closes


@pytest.mark.parametrize("kind", sorted(faults.OPT_IN_CHAOS))
def test_opt_in_kinds_have_no_default_weight(kind):
    assert faults.CHAOS_WEIGHTS.get(kind, 0) == 0
    assert kind in faults.CHAOS_KINDS
