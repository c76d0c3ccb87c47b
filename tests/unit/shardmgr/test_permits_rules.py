"""The permit broker's edges, each pinned by a mutant of shardmgr/permits.py that
tests/unit/shardmgr/test_permits.py let through (`make mutate`): the reserve applies only to
re-identifies, a generation's cancel or exit touches only that generation, and stale or
duplicate reports are matched by nonce value."""

from __future__ import annotations

from tests.unit.shardmgr.test_permits import RESERVE, WINDOW, Recorder, _ask, _broker, _settle
from workers.clock import FakeClock


def _always() -> bool:
    return True


def big(n: int) -> int:
    """A nonce as it arrives from the pipe: a fresh int object, never a cached small int."""
    return int(str(100_000 + n))


async def test_a_shards_first_identify_keeps_the_reserve_like_any_other() -> None:
    # The first start keeps the reserve for the restarts that follow (issue 22 item 9).
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec, remaining=RESERVE)
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    await _settle()
    assert broker.granted == 0 and broker.pending == 1
    await broker.aclose()
    broker = _broker(clock, rec, remaining=RESERVE + 1)
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    await rec.next_send()
    assert broker.granted == 1


async def test_a_first_identify_never_spends_a_budget_that_is_empty() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec, remaining=0)
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    await _settle()
    assert broker.granted == 0 and broker.pending == 1
    await broker.aclose()


async def test_cancelling_a_generation_leaves_older_generations_waiting() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec, remaining=0)
    broker.request(_ask(0, 1, gen=1), send=rec.send, wanted=_always)
    broker.request(_ask(1, 2, gen=2), send=rec.send, wanted=_always)
    await _settle()
    broker.cancel_generation(2)
    await _settle()
    assert broker.pending == 1
    await broker.aclose()


async def test_a_generation_gone_releases_only_its_own_grants() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    for gen, shard in ((1, 0), (2, 1), (3, 2)):
        broker.request(_ask(shard, shard + 1, gen=gen), send=rec.send, wanted=_always)
        await rec.next_send()
    assert broker.held == 3
    broker.generation_gone(2)
    assert broker.held == 2
    await broker.aclose()


async def test_a_sent_report_with_an_older_nonce_keeps_the_newer_grant_held() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    broker.request(_ask(0, 7), send=rec.send, wanted=_always)
    await rec.next_send()
    broker.sent(1, 0, 5)
    assert broker.held == 1
    await broker.aclose()


async def test_reports_match_their_grant_by_nonce_value() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    broker.request(_ask(0, big(1)), send=rec.send, wanted=_always)
    broker.request(_ask(1, big(2)), send=rec.send, wanted=_always)
    await rec.next_send()
    await _settle()
    broker.sent(1, 0, big(1))
    broker.release(1, 1, big(2))
    assert broker.held == 0
    await broker.aclose()


async def test_a_cancel_matches_its_pending_request_by_nonce_value() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec, remaining=0)
    broker.request(_ask(0, big(1)), send=rec.send, wanted=_always)
    await _settle()
    broker.release(1, 0, big(1))
    await _settle()
    assert broker.pending == 0
    await broker.aclose()


async def test_a_cancel_with_a_newer_nonce_leaves_the_pending_request() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec, remaining=0)
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    await _settle()
    broker.release(1, 0, 2)
    await _settle()
    assert broker.pending == 1
    await broker.aclose()


class Gauges(Recorder):
    """Also keeps the queue depth and wait times the broker reports."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: list[int] = []
        self.waited: list[float] = []

    def identify_queue(self, depth: int) -> None:
        self.queue.append(depth)

    def identify_waited(self, seconds: float) -> None:
        self.waited.append(seconds)


async def test_the_queue_gauge_counts_a_request_as_soon_as_it_is_made() -> None:
    clock, rec = FakeClock(start=0.0), Gauges()
    broker = _broker(clock, rec, remaining=0)
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    assert rec.queue == [1]
    await broker.aclose()


async def test_the_wait_reported_is_the_time_from_request_to_grant() -> None:
    clock, rec = FakeClock(start=100.0), Gauges()
    broker = _broker(clock, rec)
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    await rec.next_send()
    broker.sent(1, 0, 1)
    broker.request(_ask(4, 2), send=rec.send, wanted=_always)  # same bucket: one window
    await _settle()
    await clock.advance(WINDOW)
    await rec.next_send()
    assert rec.waited == [0.0, WINDOW]
    await broker.aclose()


async def test_a_generations_waits_are_matched_by_value() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec, remaining=0)
    broker.request(_ask(0, 1, gen=big(1)), send=rec.send, wanted=_always)
    await _settle()
    broker.cancel_generation(big(1))
    await _settle()
    assert broker.pending == 0
    await broker.aclose()


async def test_a_generations_grants_are_matched_by_value() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec)
    broker.request(_ask(1, 2, gen=big(2)), send=rec.send, wanted=_always)
    await rec.next_send()
    broker.generation_gone(big(2))
    assert broker.held == 0
    await broker.aclose()


async def test_the_budget_stays_exhausted_while_another_shard_still_waits_for_it() -> None:
    clock, rec = FakeClock(start=0.0), Recorder()
    broker = _broker(clock, rec, remaining=0)
    broker.request(_ask(0, 1), send=rec.send, wanted=_always)
    broker.request(_ask(1, 2), send=rec.send, wanted=_always)
    await _settle()
    assert broker.exhausted is not None
    broker.release(1, 0, 1)
    await _settle()
    assert broker.exhausted is not None and rec.exhausted[-1] is not None
    await broker.aclose()
