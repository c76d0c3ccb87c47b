"""The identify-permit broker against a LocalIdentifyLimiter on a FakeClock."""

from __future__ import annotations

import asyncio

from shardmgr.identify import LocalIdentifyLimiter, SessionStartLimit
from shardmgr.identify.broker import PermitBroker
from workers import ipc
from workers.clock import FakeClock

WINDOW = 1.0
RESERVE = 2


class Recorder:
    """Metrics and worker pipe in one: remembers what the broker reported and sent."""

    def __init__(self) -> None:
        self.sent: list[ipc.ToWorker] = []
        self.exhausted: list[str | None] = []
        self.remaining: list[int] = []
        self.sent_event = asyncio.Event()
        self.hold_sends = False
        self.release = asyncio.Event()

    async def send(self, msg: ipc.ToWorker) -> bool:
        if self.hold_sends:
            await self.release.wait()
        self.sent.append(msg)
        self.sent_event.set()
        return True

    async def next_send(self) -> ipc.ToWorker:
        await asyncio.wait_for(self.sent_event.wait(), 5.0)
        self.sent_event.clear()
        return self.sent[-1]

    def identify_queue(self, depth: int) -> None:
        pass

    def identify_waited(self, seconds: float) -> None:
        pass

    def budget_exhausted(self, reason: str | None) -> None:
        self.exhausted.append(reason)

    def session_start_remaining(self, remaining: int, total: int | None = None) -> None:
        self.remaining.append(remaining)


def _broker(
    clock: FakeClock, rec: Recorder, *, remaining: int = 100, reset_after_s: float = 3600.0
) -> PermitBroker:
    limits = SessionStartLimit(
        total=100, remaining=remaining, reset_after_s=reset_after_s, max_concurrency=4
    )
    limiter = LocalIdentifyLimiter(limits, window_s=WINDOW, margin=0.0, clock=clock)
    return PermitBroker(limiter, rec, reserve=RESERVE, send_timeout_s=5.0, clock=clock)


async def _shard_0_identified(
    reset_after_s: float = 3600.0,
) -> tuple[FakeClock, Recorder, PermitBroker]:
    """A broker whose budget has 3 starts, one just spent on shard 0's first identify: any
    re-identify of shard 0 now meets the reserve of 2."""
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec, remaining=3, reset_after_s=reset_after_s)
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    await rec.next_send()
    return clock, rec, broker


def _ask(shard_id: int, nonce: int, gen: int = 1) -> ipc.IdentifyRequest:
    return ipc.IdentifyRequest(gen=gen, shard_id=shard_id, nonce=nonce)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _always() -> bool:
    return True


async def test_first_identify_is_granted() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    assert await rec.next_send() == ipc.IdentifyGrant(gen=1, shard_id=0, nonce=1)
    assert broker.granted == 1 and broker.pending == 0
    await broker.aclose()


async def test_a_shards_first_identify_also_leaves_the_reserve() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec, remaining=RESERVE)
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    await _settle()
    assert rec.sent == [] and broker.pending == 1
    assert broker.exhausted is not None and "reserve" in broker.exhausted
    assert broker.limiter.remaining == RESERVE
    await broker.aclose()


async def test_restart_identify_waits_instead_of_spending_the_reserve() -> None:
    clock, rec, broker = await _shard_0_identified()
    broker.request(_ask(0, 2), send=rec.send, wanted=_always)  # a re-identify of shard 0
    await _settle()  # the request settles the first grant: its window counts from now
    await clock.advance(WINDOW)  # its bucket's window first, then the budget
    assert len(rec.sent) == 1 and broker.pending == 1
    assert broker.exhausted is not None and "reserve" in broker.exhausted
    assert rec.exhausted == [broker.exhausted]
    assert broker.limiter.remaining == 2
    await broker.aclose()


async def test_budget_wait_ends_with_a_grant_once_the_budget_refills() -> None:
    clock, rec, broker = await _shard_0_identified(reset_after_s=60.0)
    broker.request(_ask(0, 2), send=rec.send, wanted=_always)
    await _settle()
    await clock.advance(WINDOW)
    assert broker.exhausted is not None
    await clock.advance(60.0 - WINDOW)
    assert await rec.next_send() == ipc.IdentifyGrant(gen=1, shard_id=0, nonce=2)
    await _settle()
    assert broker.exhausted is None and rec.exhausted[-1] is None
    assert broker.granted == 2
    await broker.aclose()


async def test_second_request_for_a_shard_replaces_the_first() -> None:
    _, rec, broker = await _shard_0_identified()
    broker.request(_ask(0, 2), send=rec.send, wanted=_always)
    broker.request(_ask(0, 3), send=rec.send, wanted=_always)
    await _settle()
    assert broker.pending == 1
    broker.release(1, 0, nonce=2)  # the replaced request: nothing left to cancel
    assert broker.pending == 1
    broker.release(1, 0, nonce=3)
    await _settle()
    assert broker.pending == 0 and broker.limiter.queue_depth == 0
    await broker.aclose()


async def test_cancel_generation_abandons_its_waits_unspent() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    await rec.next_send()
    broker.request(_ask(4, 2), send=rec.send, wanted=_always)  # same bucket: waits a window
    await _settle()
    broker.cancel_generation(1)
    await clock.advance(WINDOW)
    await _settle()
    assert len(rec.sent) == 1 and broker.pending == 0
    assert broker.limiter.remaining == 99
    await broker.aclose()


async def test_grant_for_a_process_going_away_is_not_sent() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    broker.request(_ask(0, 1), send=rec.send, wanted=lambda: False)
    await _settle()
    assert rec.sent == [] and broker.granted == 0 and broker.pending == 0
    await broker.aclose()


async def test_limiter_failure_is_answered_with_a_refusal() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)

    async def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionError("redis down")

    broker.limiter.acquire = broken  # type: ignore[method-assign]
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    reply = await rec.next_send()
    assert isinstance(reply, ipc.IdentifyRefused) and "unavailable" in reply.reason
    await broker.aclose()


async def test_request_stays_pending_until_its_grant_is_sent() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    rec.hold_sends = True
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    await _settle()
    assert broker.granted == 1 and broker.pending == 1
    rec.release.set()
    await rec.next_send()
    await _settle()
    assert broker.pending == 0
    await broker.aclose()


async def test_refusal_of_a_foreign_shard_is_sent() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    broker.refuse(_ask(9, 1), "not a shard of this worker", send=rec.send)
    reply = await rec.next_send()
    assert isinstance(reply, ipc.IdentifyRefused) and reply.shard_id == 9
    assert broker.granted == 0
    await broker.aclose()


async def _granted(broker: PermitBroker, rec: Recorder, shard_id: int, nonce: int) -> None:
    broker.request(_ask(shard_id, nonce), send=rec.send, wanted=_always)
    assert await rec.next_send() == ipc.IdentifyGrant(gen=1, shard_id=shard_id, nonce=nonce)


async def test_next_grant_of_a_bucket_is_timed_from_the_reported_send() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    await _granted(broker, rec, 0, 1)
    assert broker.held == 1
    broker.request(_ask(4, 2), send=rec.send, wanted=_always)  # same bucket
    await clock.advance(3 * WINDOW)
    assert len(rec.sent) == 1  # the first IDENTIFY is not out yet: the bucket stays held
    broker.sent(1, 0, nonce=1)
    await _settle()
    assert broker.held == 0
    await clock.advance(WINDOW - 0.01)
    assert len(rec.sent) == 1
    await clock.advance(0.01)
    assert await rec.next_send() == ipc.IdentifyGrant(gen=1, shard_id=4, nonce=2)
    await broker.aclose()


async def test_a_sent_report_for_another_grant_is_ignored() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    await _granted(broker, rec, 0, 1)
    broker.sent(1, 0, nonce=9)
    assert broker.held == 1
    await broker.aclose()


async def test_a_grant_given_back_unused_frees_its_bucket_one_window_after_the_grant() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    await _granted(broker, rec, 0, 1)
    broker.request(_ask(4, 2), send=rec.send, wanted=_always)
    await _settle()
    broker.release(1, 0, nonce=1)  # the socket closed before the IDENTIFY went out
    await _settle()
    assert broker.held == 0
    await clock.advance(WINDOW)
    assert await rec.next_send() == ipc.IdentifyGrant(gen=1, shard_id=4, nonce=2)
    await broker.aclose()


async def test_grants_stay_held_while_a_stopping_process_may_still_send() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    await _granted(broker, rec, 0, 1)
    broker.cancel_generation(1)
    assert broker.held == 1
    broker.generation_gone(1)
    assert broker.held == 0
    await broker.aclose()


async def test_grants_of_a_process_that_is_gone_free_their_buckets_one_window_later() -> None:
    # It may have sent the IDENTIFY just before dying: the window counts from its death.
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    await _granted(broker, rec, 0, 1)
    broker.request(_ask(4, 1, gen=2), send=rec.send, wanted=_always)  # its successor
    await _settle()
    await clock.advance(3 * WINDOW)
    broker.generation_gone(1)
    await _settle()
    await clock.advance(WINDOW - 0.01)
    assert len(rec.sent) == 1
    await clock.advance(0.01)
    assert await rec.next_send() == ipc.IdentifyGrant(gen=2, shard_id=4, nonce=1)
    await broker.aclose()


async def test_a_grant_not_sent_to_a_process_going_away_frees_its_bucket() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    broker.request(_ask(0, 1), send=rec.send, wanted=lambda: False)
    await _settle()
    broker.request(_ask(4, 2, gen=2), send=rec.send, wanted=_always)
    await _settle()
    await clock.advance(WINDOW)
    assert await rec.next_send() == ipc.IdentifyGrant(gen=2, shard_id=4, nonce=2)
    assert broker.held == 1  # only the grant that was sent
    await broker.aclose()


async def test_a_new_request_for_the_same_shard_settles_its_previous_grant_from_now() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    await _granted(broker, rec, 0, 1)
    await clock.advance(3 * WINDOW)
    broker.request(_ask(0, 2), send=rec.send, wanted=_always)
    await _settle()
    await clock.advance(WINDOW - 0.01)
    assert len(rec.sent) == 1
    await clock.advance(0.01)
    assert await rec.next_send() == ipc.IdentifyGrant(gen=1, shard_id=0, nonce=2)
    assert broker.held == 1
    await broker.aclose()
