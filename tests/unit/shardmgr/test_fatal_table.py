"""``shardmgr.fatal``: which shards are refused for good, and the fix named for each code."""

from __future__ import annotations

import pytest

from shardmgr.fatal import FatalStops, fix_for, privileged_names
from workers import ipc
from workers.protocol import INTENT_BITS, CloseCode


def stopped(shard_id: int, code: int | None, fatal: bool = True) -> ipc.ShardStopped:
    return ipc.ShardStopped(gen=1, shard_id=shard_id, reason="r", close_code=code, fatal=fatal)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (4004, "Reset Token"),
        (4010, "--total-shards / --shard-ids"),
        (4012, "API version"),
        (4013, "intent value is invalid"),
        (4014, "Privileged Gateway Intents"),
    ],
)
def test_every_fatal_code_names_its_fix(code: int, words: str) -> None:
    assert words in fix_for(code, 0)


def test_disallowed_intents_fix_names_the_privileged_intents_asked_for() -> None:
    intents = INTENT_BITS["GUILDS"] | INTENT_BITS["MESSAGE_CONTENT"] | INTENT_BITS["GUILD_MEMBERS"]
    assert privileged_names(intents) == ["GUILD_MEMBERS", "MESSAGE_CONTENT"]
    assert fix_for(4014, intents).startswith("the bot asked for GUILD_MEMBERS, MESSAGE_CONTENT,")


def test_all_stopped_only_when_every_planned_shard_closed_fatally() -> None:
    stops = FatalStops(0)
    stops.on_message(stopped(0, CloseCode.DISALLOWED_INTENTS))
    assert not stops.all_stopped([0, 1])
    stops.on_message(stopped(1, CloseCode.AUTHENTICATION_FAILED))
    assert stops.all_stopped([0, 1])
    assert stops.explain().startswith("shard 1 closed with 4004: the token is wrong")
    assert "; shard 0 closed with 4014: the bot asked for" in stops.explain()


@pytest.mark.parametrize(
    "msg",
    [
        stopped(0, CloseCode.SHARDING_REQUIRED),  # re-plans instead
        stopped(0, None),  # shutdown or refused identify
        stopped(0, CloseCode.AUTHENTICATION_FAILED, fatal=False),
    ],
)
def test_other_stops_do_not_count(msg: ipc.ShardStopped) -> None:
    stops = FatalStops(0)
    stops.on_message(msg)
    assert not stops and not stops.all_stopped([0])


def test_a_shard_seen_alive_again_is_no_longer_stopped() -> None:
    stops = FatalStops(0)
    stops.on_message(stopped(0, CloseCode.AUTHENTICATION_FAILED))
    stops.on_message(
        ipc.ShardStateChanged(gen=2, shard_id=0, state=ipc.ShardState.CONNECTING, at=0.0)
    )
    assert not stops


def test_shard_ranges_are_folded() -> None:
    stops = FatalStops(0)
    for sid in (0, 1, 2, 5, 7, 8):
        stops.on_message(stopped(sid, CloseCode.INVALID_SHARD))
    assert stops.explain().startswith("shards 0-2,5,7-8 closed with 4010: ")
