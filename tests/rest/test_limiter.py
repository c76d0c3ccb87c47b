"""The worker's side of the shared ledger: claims, yields and batched global grants."""

from __future__ import annotations

import asyncio

from workers import ipc
from workers.clock import FakeClock
from workers.rest.buckets import LEASE_S
from workers.rest.limiter import GlobalGate, LocalCoordinator, RemoteCoordinator


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_grant_for_a_cancelled_claim_is_given_straight_back() -> None:
    sent: list[ipc.ToSupervisor] = []
    coord = RemoteCoordinator(sent.append, gen=3)
    waiter = asyncio.ensure_future(coord.claim("channel:1"))
    await settle()
    assert sent == [ipc.RestClaim(gen=3, key="channel:1")]
    waiter.cancel()
    await settle()
    state = ipc.RestKeyState(routes={"r": "b"})
    coord.deliver(ipc.RestOwned(gen=3, key="channel:1", state=state))
    assert sent[-1] == ipc.RestRelease(gen=3, key="channel:1", state=state)


async def test_a_yield_is_passed_on_even_before_the_claimer_resumes() -> None:
    sent: list[ipc.ToSupervisor] = []
    coord = RemoteCoordinator(sent.append, gen=1)
    yields: list[str] = []
    coord.on_yield(yields.append)
    waiter = asyncio.ensure_future(coord.claim("k"))
    await settle()
    # The grant and the next worker's yield request arrive back to back.
    coord.deliver(ipc.RestOwned(gen=1, key="k", state=None))
    coord.deliver(ipc.RestYield(gen=1, key="k"))
    # (before the fix the claimer found its grant given back and claimed forever)
    assert await asyncio.wait_for(waiter, 5) is None
    assert yields == ["k"]  # the client gives the key back after its request
    assert not any(isinstance(m, ipc.RestRelease) for m in sent)  # not behind its back


async def test_grant_deadline_counts_from_the_ask_plus_the_wait() -> None:
    clock = FakeClock()
    sent: list[ipc.ToSupervisor] = []
    coord = RemoteCoordinator(sent.append, gen=1, clock=clock)
    ask = asyncio.ensure_future(coord.take_global(3))
    await settle()
    await clock.advance(0.5)  # the pipe's delay does not lengthen the lease
    (msg,) = sent
    assert isinstance(msg, ipc.RestGlobalAsk) and msg.want == 3
    coord.deliver(ipc.RestGlobalGrant(gen=1, nonce=msg.nonce, tokens=2, waited_s=0.1))
    assert await ask == (2, 1000.0 + 0.1 + LEASE_S)


async def test_waiting_requests_are_asked_for_in_one_batch() -> None:
    asks: list[int] = []

    class Counting(LocalCoordinator):
        def try_take_global(self, want: int) -> tuple[int, float] | None:
            return None  # force the batched path

        async def take_global(self, want: int) -> tuple[int, float]:
            asks.append(want)
            await asyncio.sleep(0)
            return want, 1e18

    gate = GlobalGate(Counting(50))
    await asyncio.gather(*(gate.acquire() for _ in range(5)))
    assert asks == [5]
    await gate.aclose()


async def test_a_global_429_pauses_every_request_of_the_worker() -> None:
    clock = FakeClock()
    gate = GlobalGate(LocalCoordinator(50, clock), clock)
    await gate.acquire()
    gate.pause(2.0)
    waiting = asyncio.ensure_future(gate.acquire())
    await clock.advance(1.9)
    assert not waiting.done()
    await clock.advance(0.2)
    await settle()
    assert waiting.done()
    await gate.aclose()
