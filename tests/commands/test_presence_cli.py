"""`shardmgr presence` mistakes: one line on stderr, exit status 2, nothing sent."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from shardmgr.cli import main


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(capsys: Any, *argv: str) -> tuple[int, str]:
    code = main(["presence", *argv])
    return code, capsys.readouterr().err


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHARDMGR_CONFIG", "SHARDMGR_HTTP", "SHARDMGR_ADMIN_SECRET"):
        monkeypatch.delenv(name, raising=False)


def test_missing_secret_is_one_line(capsys: Any) -> None:
    code, err = run(capsys, "--status", "dnd", "--http", f"127.0.0.1:{closed_port()}")
    assert code == 2
    assert err == "shardmgr: error: set SHARDMGR_ADMIN_SECRET to the supervisor's admin secret\n"


def test_unknown_status_is_one_line(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDMGR_ADMIN_SECRET", "x")
    code, err = run(capsys, "--status", "busy")
    assert code == 2
    assert err.count("\n") == 1 and "--status must be one of online, dnd, idle, invisible" in err


def test_unknown_activity_type_is_one_line(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDMGR_ADMIN_SECRET", "x")
    code, err = run(capsys, "--status", "online", "--activity", "x", "--activity-type", "dancing")
    assert code == 2
    assert err.count("\n") == 1 and "--activity-type must be one of" in err


def test_url_without_streaming_is_one_line(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDMGR_ADMIN_SECRET", "x")
    code, err = run(capsys, "--status", "online", "--url", "https://twitch.tv/x")
    assert code == 2
    assert err.count("\n") == 1
    assert "--url needs --activity TEXT and --activity-type streaming" in err


def test_missing_status_is_one_line(capsys: Any) -> None:
    code, err = run(capsys)
    assert code == 2
    assert err.count("\n") == 1 and "--status" in err


def test_no_supervisor_is_one_line(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDMGR_ADMIN_SECRET", "x")
    code, err = run(capsys, "--status", "dnd", "--http", f"127.0.0.1:{closed_port()}")
    assert code == 2
    assert err.count("\n") == 1 and "no supervisor answers at" in err
