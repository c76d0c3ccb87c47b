"""The supervisor's side of poison events: suspects per shard, the skip after two deaths at
one (shard, seq), the dead-letter file (0600, never through a symlink), the settings and
the command line."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from shardmgr import deadletters, deadletters_cli
from shardmgr.cli import main
from shardmgr.config import load_settings
from shardmgr.errors import UserError
from shardmgr.metrics import Metrics
from shardmgr.poison import PoisonTracker
from workers import ipc
from workers.events import Event
from workers.inflight import InFlightFile

SHARDS = [4, 5]
SESSION = ipc.SessionInfo("s-1", 11, "ws://127.0.0.1:1")
SESSIONS = {4: SESSION, 5: ipc.SessionInfo("s-2", 30, "ws://127.0.0.1:1")}


def die_inside(
    tracker: PoisonTracker,
    seq: int | None,
    hung: bool = False,
    last: int | None = None,
    session: ipc.SessionInfo = SESSION,
    canary_meanwhile: bool = False,
) -> None:
    """A worker of shards 4 and 5 dies while shard 4's handler is inside ``seq`` (a batch
    up to ``last``), shard 4 resuming ``session``."""
    path = tracker.inflight_file(0, len(SHARDS))
    assert path is not None
    mapped = InFlightFile(path, len(SHARDS))
    if seq is not None:
        events = [
            Event(4, n, "MESSAGE_CREATE", msgspec.Raw(b"{}")) for n in range(seq, (last or seq) + 1)
        ]
        mapped.slot(0).enter_batch(events)
    if hung:
        mapped.write_stack('File "bot.py", line 9, in on_message\n    time.sleep(60)')
    mapped.close()
    if canary_meanwhile:  # a rolling restart's standby gets its file while this one runs
        assert tracker.inflight_file(0, len(SHARDS)) != path
    tracker.process_ended(path, SHARDS, hung, {**SESSIONS, 4: session}.get)


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[PoisonTracker]:
    t = PoisonTracker(tmp_path / "state")
    yield t
    t.close()


def test_two_deaths_inside_one_event_make_the_successor_skip_it(tracker: PoisonTracker) -> None:
    die_inside(tracker, 12)
    assert tracker.skip_for(4, SESSION) is None
    die_inside(tracker, 12)
    assert tracker.skip_for(4, SESSION) == ipc.PoisonSkip(12, 12)


def test_a_canary_started_beside_a_dying_worker_does_not_hide_its_suspect(
    tracker: PoisonTracker,
) -> None:
    # Found by the chaos run: the standby's file replaced the running process's own, so
    # that process's death named no suspect and a poison killed three workers, not two.
    die_inside(tracker, 12, canary_meanwhile=True)
    die_inside(tracker, 12, canary_meanwhile=True)
    assert tracker.skip_for(4, SESSION) == ipc.PoisonSkip(12, 12)


def test_the_idle_sibling_shard_has_no_suspect(tracker: PoisonTracker) -> None:
    die_inside(tracker, 12)
    die_inside(tracker, 12)
    assert tracker.skip_for(5, SESSIONS[5]) is None


def test_deaths_inside_different_events_do_not_add_up(tracker: PoisonTracker) -> None:
    die_inside(tracker, 12)
    die_inside(tracker, 13)
    assert tracker.skip_for(4, SESSION) is None
    die_inside(tracker, 13)
    assert tracker.skip_for(4, SESSION) == ipc.PoisonSkip(13, 13)


def test_overlapping_batches_narrow_the_suspect_to_their_overlap(tracker: PoisonTracker) -> None:
    die_inside(tracker, 10, last=15)
    die_inside(tracker, 10, last=20)
    assert tracker.skip_for(4, SESSION) == ipc.PoisonSkip(10, 15)


def test_a_skip_never_applies_to_another_session(tracker: PoisonTracker) -> None:
    die_inside(tracker, 12)
    die_inside(tracker, 12)
    other = ipc.SessionInfo("s-new", 3, "ws://127.0.0.1:1")
    assert tracker.skip_for(4, other) is None
    assert tracker.skip_for(4, None) is None


def test_deaths_in_different_sessions_do_not_add_up(tracker: PoisonTracker) -> None:
    die_inside(tracker, 12)
    die_inside(tracker, 12, session=ipc.SessionInfo("s-new", 3, "ws://127.0.0.1:1"))
    assert tracker.skip_for(4, SESSION) is None


def test_a_death_outside_any_handler_has_no_suspect(tracker: PoisonTracker) -> None:
    die_inside(tracker, None)
    die_inside(tracker, None)
    assert tracker.skip_for(4, SESSION) is None and tracker.skip_for(5, SESSIONS[5]) is None


def test_each_process_gets_a_fresh_private_in_flight_file(tracker: PoisonTracker) -> None:
    die_inside(tracker, 12)
    path = tracker.inflight_file(0, len(SHARDS))
    assert path is not None
    assert InFlightFile(path, len(SHARDS)).suspects() == [None, None]
    assert stat.S_IMODE(os.stat(Path(path).parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_dead_letter_record_has_every_field_and_clears_the_skip(
    tracker: PoisonTracker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    die_inside(tracker, 12, hung=True)
    die_inside(tracker, 12, hung=True)
    msg = ipc.DeadLettered(gen=3, shard_id=4, seq=12, t="MESSAGE_CREATE", d=b'{"id":"1"}')
    with caplog.at_level(logging.ERROR, logger="shardmgr.poison"):
        tracker.dead_lettered(msg)
    path = tmp_path / "state" / "dead-letters.jsonl"
    (line,) = path.read_text().splitlines()
    doc = json.loads(line)
    assert set(doc) == {"shard_id", "seq", "t", "d", "reason", "stack", "at"}
    assert (doc["shard_id"], doc["seq"], doc["t"], doc["d"]) == (
        4,
        12,
        "MESSAGE_CREATE",
        {"id": "1"},
    )
    assert doc["reason"] == "hang" and "time.sleep(60)" in doc["stack"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tracker.skip_for(4, SESSION) is None
    (record,) = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert record.__dict__["extra_fields"]["shard"] == 4
    assert record.__dict__["extra_fields"]["seq"] == 12
    assert record.__dict__["extra_fields"]["event"] == "MESSAGE_CREATE"


def test_the_dead_letter_file_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, state / "dead-letters.jsonl")
    letter = deadletters.DeadLetter(
        4, 12, "MESSAGE_CREATE", msgspec.Raw(b"{}"), deadletters.DeathReason.CRASH, None, 1.0
    )
    with pytest.raises(OSError):
        deadletters.append(state, letter)
    with pytest.raises(OSError):
        deadletters.read_all(state)
    assert victim.read_text() == "precious\n"


def test_list_shows_each_dead_letter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seq in (12, 40):
        letter = deadletters.DeadLetter(
            4, seq, "GUILD_CREATE", msgspec.Raw(b"{}"), deadletters.DeathReason.HANG, "x\n  y", 0.0
        )
        deadletters.append(tmp_path, letter)
    assert main(["dead-letters", "list", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("4:12  GUILD_CREATE  hang  1970-01-01T00:00:00Z")
    assert out[2].startswith("4:40  ")


@pytest.mark.parametrize(
    ("text", "parsed"), [("3:1042", (3, 1042)), (" 0:1 ", (0, 1)), ("3", None), ("a:1", None)]
)
def test_replay_target_is_shard_colon_seq(text: str, parsed: tuple[int, int] | None) -> None:
    if parsed is None:
        with pytest.raises(UserError, match="SHARD:SEQ"):
            deadletters_cli.parse_target(text)
    else:
        assert deadletters_cli.parse_target(text) == parsed


def test_replay_of_a_malformed_target_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["dead-letters", "replay", "twelve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SHARD:SEQ" in err[0]


def test_loop_stall_defaults_well_under_the_ping_timeout() -> None:
    assert load_settings({}, env={}).loop_stall == 5.0
    assert load_settings({"ping_timeout_s": "3", "ping_interval_s": "1"}, env={}).loop_stall == 1.0


def test_loop_stall_must_be_shorter_than_the_ping_timeout() -> None:
    with pytest.raises(UserError, match="loop-stall"):
        load_settings({"loop_stall_s": "15"}, env={})


def test_dead_letters_and_loop_lag_are_metrics() -> None:
    m = Metrics()
    m.set_plan(2, {0: [4, 5]})
    m.on_worker_message(0, ipc.DeadLettered(gen=1, shard_id=4, seq=12, t="X", d=b"{}"))
    m.on_worker_message(0, ipc.Stats(gen=1, shards=[], loop_lag_s=2.5))
    body = m.render()[0].decode()
    assert 'shardmgr_shard_dead_letters_total{shard="4",worker="0"} 1.0' in body
    assert 'shardmgr_shard_dead_letters_total{shard="5",worker="0"} 0.0' in body
    assert 'shardmgr_worker_loop_lag_seconds{worker="0"} 2.5' in body
