"""The worker's end of identify permits over IPC: what each outcome of a grant tells the
supervisor, with the grant's nonce."""

from __future__ import annotations

import asyncio
from typing import cast

import msgspec

from workers import ipc
from workers.ipc_client import IpcChannel, IpcPermits


class Pipe:
    """A StreamWriter stand-in that decodes every frame written to it."""

    def __init__(self) -> None:
        self.messages: list[ipc.ToSupervisor] = []
        self._decoder = msgspec.msgpack.Decoder(ipc.ToSupervisor)

    def write(self, data: bytes) -> None:
        self.messages.append(self._decoder.decode(data[4:]))

    def is_closing(self) -> bool:
        return False


def _permits(gen: int = 7) -> tuple[IpcPermits, Pipe]:
    pipe = Pipe()
    channel = IpcChannel(cast(asyncio.StreamWriter, pipe), gen)
    return IpcPermits(channel), pipe


async def _granted(permits: IpcPermits, pipe: Pipe, shard_id: int) -> int:
    waiting = asyncio.ensure_future(permits.acquire(shard_id))
    await asyncio.sleep(0)
    request = pipe.messages[-1]
    assert isinstance(request, ipc.IdentifyRequest)
    permits.granted(request.nonce)
    await asyncio.wait_for(waiting, 1)
    return request.nonce


async def test_a_sent_identify_is_reported_with_its_grants_nonce() -> None:
    permits, pipe = _permits()
    nonce = await _granted(permits, pipe, 3)
    permits.sent(3)
    assert pipe.messages[-1] == ipc.IdentifySent(gen=7, shard_id=3, nonce=nonce)


async def test_an_unused_grant_is_given_back_with_its_nonce() -> None:
    permits, pipe = _permits()
    nonce = await _granted(permits, pipe, 3)
    permits.release(3)
    assert pipe.messages[-1] == ipc.IdentifyRelease(gen=7, shard_id=3, nonce=nonce)


async def test_a_grant_is_reported_once_whatever_the_shard_says_after() -> None:
    permits, pipe = _permits()
    await _granted(permits, pipe, 3)
    permits.sent(3)
    before = len(pipe.messages)
    permits.sent(3)
    permits.release(3)
    assert len(pipe.messages) == before


async def test_a_grant_that_raced_the_cancelled_wait_is_given_back() -> None:
    permits, pipe = _permits()
    waiting = asyncio.ensure_future(permits.acquire(3))
    await asyncio.sleep(0)
    request = pipe.messages[-1]
    assert isinstance(request, ipc.IdentifyRequest)
    permits.granted(request.nonce)
    waiting.cancel()  # before the waiter saw its grant
    await asyncio.gather(waiting, return_exceptions=True)
    assert pipe.messages[-1] == ipc.IdentifyRelease(gen=7, shard_id=3, nonce=request.nonce)
