"""The supervisor's generation fence where a worker's exit is handled: the exit of any
generation but the slot's current one changes nothing. Kills mutants of
shardmgr/workerslot.py's ``SlotRunner._process_gone`` that every other test let through
(`make mutate`); the fence on incoming messages is issue 21 item 1's test."""

from __future__ import annotations

import pytest

from shardmgr.supervisor import Supervisor
from tests.supervisor.test_supervisor_process import _worker, remaining, sup

pytestmark = pytest.mark.integration
__all__ = ["remaining", "sup"]  # fixtures, shared with the process tests


@pytest.mark.parametrize("offset", [-1, 1])
async def test_the_exit_of_another_generation_leaves_the_worker_up(
    sup: Supervisor, offset: int
) -> None:
    slot = sup._slots[0]
    assert slot.up and slot.proc is not None
    sup._runner._process_gone(slot, slot.gen + offset)
    assert slot.up and slot.proc is not None
    assert _worker(sup, 0)["up"]
    assert all(s["state"] != "down" for s in sup.status()["shards"][:2])
