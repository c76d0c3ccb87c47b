"""The in-flight records the supervisor reads after a worker died: what each shard's handler
was inside, the skip of a poison event, and the delivery loop that writes them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from workers.events import Event
from workers.handlers import Delivery, Handler
from workers.inflight import InFlightFile, Suspect, file_size, read_stack, read_suspects
from workers.reporter import ShardCounters


def event(seq: int, shard: int = 0, name: str = "MESSAGE_CREATE", epoch: int = 0) -> Event:
    return Event(shard, seq, name, msgspec.Raw(b'{"n":%d}' % seq), epoch)


@pytest.fixture
def mapped(tmp_path: Path) -> InFlightFile:
    path = tmp_path / "worker-0"
    path.write_bytes(bytes(file_size(2)))
    return InFlightFile(str(path), 2)


def test_the_shard_inside_its_handler_is_the_suspect_and_its_idle_sibling_is_not(
    mapped: InFlightFile,
) -> None:
    busy = mapped.slot(0)
    mapped.slot(1)
    assert busy.enter(event(12, name="GUILD_CREATE"))
    assert mapped.suspects() == [Suspect(12, 12, "GUILD_CREATE"), None]
    busy.leave()
    assert mapped.suspects() == [None, None]


def test_a_batch_is_suspect_as_a_whole(mapped: InFlightFile) -> None:
    slot = mapped.slot(1)
    assert [e.seq for e in slot.enter_batch([event(10), event(11), event(12)])] == [10, 11, 12]
    assert mapped.suspects() == [None, Suspect(10, 12, "MESSAGE_CREATE")]


def test_the_supervisor_reads_the_same_records_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "worker-0"
    path.write_bytes(bytes(file_size(2)))
    mapped = InFlightFile(str(path), 2)
    mapped.slot(1).enter(event(7, shard=1))
    mapped.write_stack('File "bot.py", line 3, in on_message')
    data = path.read_bytes()
    assert read_suspects(data, 2) == [None, Suspect(7, 7, "MESSAGE_CREATE")]
    assert read_stack(data, 2) == 'File "bot.py", line 3, in on_message'
    mapped.close()


def test_the_poison_event_goes_to_on_skip_instead_of_the_handler(mapped: InFlightFile) -> None:
    skipped: list[int | None] = []
    slot = mapped.slot(0, skip=(12, 12), on_skip=lambda e: skipped.append(e.seq))
    assert slot.enter(event(11))
    slot.leave()
    assert not slot.enter(event(12))
    assert skipped == [12]
    assert mapped.suspects() == [None, None]
    assert slot.enter(event(13))


def test_an_event_of_a_fresh_session_with_the_poison_seq_is_handed_over(
    mapped: InFlightFile,
) -> None:
    slot = mapped.slot(0, skip=(12, 12), on_skip=lambda e: None)
    # Epoch 1: a new session after a failed resume; its seq 12 is another event.
    assert slot.enter(event(12, epoch=1))


def test_a_poison_batch_is_taken_out_of_the_batch(mapped: InFlightFile) -> None:
    skipped: list[int | None] = []
    slot = mapped.slot(0, skip=(11, 12), on_skip=lambda e: skipped.append(e.seq))
    handed = slot.enter_batch([event(10), event(11), event(12), event(13)])
    assert [e.seq for e in handed] == [10, 13]
    assert skipped == [11, 12]


async def test_delivery_passes_the_poison_event_by_and_its_checkpoint_moves_past_it(
    mapped: InFlightFile,
) -> None:
    seen: list[int | None] = []
    skipped: list[int | None] = []

    async def handler(e: Event) -> None:
        seen.append(e.seq)

    delivery = Delivery(0, Handler(handler), ShardCounters())
    delivery.inflight = mapped.slot(0, skip=(12, 12), on_skip=lambda e: skipped.append(e.seq))
    task = asyncio.get_running_loop().create_task(delivery.run())
    for seq in (11, 12, 13):
        delivery.push(event(seq))
    await asyncio.sleep(0)
    await delivery.wait_idle()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen == [11, 13]
    assert skipped == [12]
    assert delivery.checkpoint == (0, 13)


async def test_delivery_marks_the_event_its_handler_is_inside(mapped: InFlightFile) -> None:
    inside: list[list[Suspect | None]] = []

    async def handler(e: Event) -> None:
        inside.append(mapped.suspects())

    async def batch_handler(events: Sequence[Event]) -> None:
        inside.append(mapped.suspects())

    class Batches:
        handle_batch = staticmethod(batch_handler)

    for index, target in ((0, handler), (1, Batches())):
        delivery = Delivery(index, Handler(target), ShardCounters())
        delivery.inflight = mapped.slot(index)
        task = asyncio.get_running_loop().create_task(delivery.run())
        delivery.push(event(5, shard=index))
        delivery.push(event(6, shard=index))
        await asyncio.sleep(0)
        await delivery.wait_idle()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert inside[0] == [Suspect(5, 5, "MESSAGE_CREATE"), None]
    assert inside[-1] == [None, Suspect(5, 6, "MESSAGE_CREATE")]
    assert mapped.suspects() == [None, None]


def test_the_worker_never_opens_its_in_flight_file_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(bytes(file_size(1)))
    link = tmp_path / "worker-0"
    os.symlink(target, link)
    with pytest.raises(OSError):
        InFlightFile(str(link), 1)
