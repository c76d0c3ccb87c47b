"""The supervisor's REST ledger: key ownership handed over with its state, global grants."""

from __future__ import annotations

import asyncio

import pytest

from shardmgr.restlimits import LocalGlobal, RestBroker, Send
from workers import ipc
from workers.clock import FakeClock
from workers.rest.buckets import GLOBAL_WINDOW_S

A, B, C = (0, 1), (1, 1), (2, 1)
STATE = ipc.RestKeyState(
    buckets=[ipc.RestBucket("b", 5, 0, 2.0)], routes={"POST /channels/{channel_id}/messages": "b"}
)


class Pipes:
    def __init__(self) -> None:
        self.got: dict[tuple[int, int], list[ipc.ToWorker]] = {A: [], B: [], C: []}

    def send_to(self, owner: tuple[int, int]) -> Send:
        async def send(msg: ipc.ToWorker) -> bool:
            self.got[owner].append(msg)
            return True

        return send


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> RestBroker:
    return RestBroker(LocalGlobal(5, clock), clock)


async def test_free_key_is_granted_at_once(broker: RestBroker) -> None:
    pipes = Pipes()
    broker.handle(A, ipc.RestClaim(gen=1, key="channel:1"), pipes.send_to(A))
    await settle()
    assert pipes.got[A] == [ipc.RestOwned(gen=1, key="channel:1", state=None)]


async def test_claim_of_an_owned_key_asks_the_owner_to_yield_and_passes_its_state(
    broker: RestBroker,
) -> None:
    pipes = Pipes()
    broker.handle(A, ipc.RestClaim(gen=1, key="k"), pipes.send_to(A))
    broker.handle(B, ipc.RestClaim(gen=1, key="k"), pipes.send_to(B))
    broker.handle(C, ipc.RestClaim(gen=1, key="k"), pipes.send_to(C))
    await settle()
    assert pipes.got[A][-1] == ipc.RestYield(gen=1, key="k")
    assert pipes.got[B] == [] and pipes.got[C] == []
    broker.handle(A, ipc.RestRelease(gen=1, key="k", state=STATE), pipes.send_to(A))
    await settle()
    # B gets the key with A's knowledge, and is asked to yield at once: C waits
    assert pipes.got[B] == [
        ipc.RestOwned(gen=1, key="k", state=STATE),
        ipc.RestYield(gen=1, key="k"),
    ]


async def test_a_dead_owners_key_passes_on_with_unknown_state(broker: RestBroker) -> None:
    pipes = Pipes()
    broker.handle(A, ipc.RestClaim(gen=1, key="k"), pipes.send_to(A))
    broker.handle(B, ipc.RestClaim(gen=1, key="k"), pipes.send_to(B))
    await settle()
    broker.gone(A)
    await settle()
    assert pipes.got[B] == [ipc.RestOwned(gen=1, key="k", state=None)]
    # a late release from the dead process changes nothing
    broker.handle(A, ipc.RestRelease(gen=1, key="k", state=STATE), pipes.send_to(A))
    await settle()
    assert len(pipes.got[B]) == 1


async def test_kept_state_ages_while_nobody_owns_the_key(
    broker: RestBroker, clock: FakeClock
) -> None:
    pipes = Pipes()
    broker.handle(A, ipc.RestClaim(gen=1, key="k"), pipes.send_to(A))
    broker.handle(A, ipc.RestRelease(gen=1, key="k", state=STATE), pipes.send_to(A))
    await clock.advance(0.5)
    broker.handle(B, ipc.RestClaim(gen=1, key="k"), pipes.send_to(B))
    await settle()
    owned = pipes.got[B][-1]
    assert isinstance(owned, ipc.RestOwned) and owned.state is not None
    assert owned.state.buckets[0].reset_after_s == pytest.approx(1.5)
    broker.handle(B, ipc.RestRelease(gen=1, key="k", state=owned.state), pipes.send_to(B))
    await clock.advance(2.0)  # past the reset: a new window, nothing known
    broker.handle(C, ipc.RestClaim(gen=1, key="k"), pipes.send_to(C))
    await settle()
    assert pipes.got[C][-1] == ipc.RestOwned(
        gen=1, key="k", state=ipc.RestKeyState(buckets=[], routes=STATE.routes)
    )


async def test_global_asks_share_the_limit_and_wait_for_the_window(
    broker: RestBroker, clock: FakeClock
) -> None:
    pipes = Pipes()
    broker.handle(A, ipc.RestGlobalAsk(gen=1, nonce=1, want=3), pipes.send_to(A))
    broker.handle(B, ipc.RestGlobalAsk(gen=1, nonce=1, want=4), pipes.send_to(B))
    await settle()
    assert pipes.got[A] == [ipc.RestGlobalGrant(gen=1, nonce=1, tokens=3, waited_s=0.0)]
    assert pipes.got[B] == [ipc.RestGlobalGrant(gen=1, nonce=1, tokens=2, waited_s=0.0)]
    broker.handle(C, ipc.RestGlobalAsk(gen=1, nonce=5, want=1), pipes.send_to(C))
    await settle()
    assert pipes.got[C] == []
    await clock.advance(GLOBAL_WINDOW_S)
    await settle()
    (grant,) = pipes.got[C]
    assert isinstance(grant, ipc.RestGlobalGrant) and grant.tokens == 1
    assert grant.waited_s == pytest.approx(GLOBAL_WINDOW_S)
    await broker.aclose()
