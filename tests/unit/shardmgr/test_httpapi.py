from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from shardmgr.errors import UserError
from shardmgr.httpapi import HttpApi


class Source:
    def __init__(self) -> None:
        self.is_healthy = True
        self.is_ready = False
        self.restarts = 0
        self.accept_restart = True

    def status(self) -> dict[str, Any]:
        return {"supervisor": {"pid": 1}, "workers": [], "shards": [{"id": 0}]}

    def healthy(self) -> bool:
        return self.is_healthy

    def ready(self) -> bool:
        return self.is_ready

    def request_rolling_restart(self) -> bool:
        self.restarts += 1
        return self.accept_restart


class Metrics:
    def render(self) -> tuple[bytes, str]:
        return b"shardmgr_up 1\n", "text/plain; version=0.0.4; charset=utf-8"


async def _serve(secret: str | None) -> tuple[HttpApi, Source]:
    source = Source()
    api = HttpApi(source, Metrics(), admin_secret=secret)
    await api.start("127.0.0.1", 0)
    return api, source


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_binding_port_zero_reports_the_chosen_port() -> None:
    api, _ = await _serve(None)
    try:
        assert api.address is not None and api.address[1] > 0
        assert api.url == f"http://127.0.0.1:{api.address[1]}"
    finally:
        await api.stop()


async def test_port_in_use_is_a_user_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        api = HttpApi(Source(), Metrics())
        with pytest.raises(UserError, match="the port is in use"):
            await api.start("127.0.0.1", port)


async def test_metrics_serves_the_registry_text(client: aiohttp.ClientSession) -> None:
    api, _ = await _serve(None)
    try:
        async with client.get(api.url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert await resp.text() == "shardmgr_up 1\n"
    finally:
        await api.stop()


async def test_healthz_and_readyz_follow_the_supervisor(client: aiohttp.ClientSession) -> None:
    api, source = await _serve(None)
    try:
        async with client.get(api.url + "/healthz") as resp:
            assert resp.status == 200
        async with client.get(api.url + "/readyz") as resp:
            assert resp.status == 503
        source.is_healthy, source.is_ready = False, True
        async with client.get(api.url + "/healthz") as resp:
            assert resp.status == 503
        async with client.get(api.url + "/readyz") as resp:
            assert resp.status == 200
    finally:
        await api.stop()


async def test_livez_answers_while_workers_are_down(client: aiohttp.ClientSession) -> None:
    api, source = await _serve(None)
    source.is_healthy = False
    try:
        async with client.get(api.url + "/livez") as resp:
            assert resp.status == 200
    finally:
        await api.stop()


async def test_status_is_json(client: aiohttp.ClientSession) -> None:
    api, _ = await _serve(None)
    try:
        async with client.get(api.url + "/status") as resp:
            assert resp.status == 200
            assert (await resp.json())["shards"] == [{"id": 0}]
    finally:
        await api.stop()


async def test_restart_is_refused_without_a_configured_secret(
    client: aiohttp.ClientSession,
) -> None:
    api, source = await _serve(None)
    try:
        async with client.post(api.url + "/restart") as resp:
            assert resp.status == 403
        assert source.restarts == 0
    finally:
        await api.stop()


async def test_restart_is_refused_with_a_wrong_secret(client: aiohttp.ClientSession) -> None:
    api, source = await _serve("s3cret-admin")
    try:
        headers = {"Authorization": "Bearer nope"}
        async with client.post(api.url + "/restart", headers=headers) as resp:
            assert resp.status == 403
        assert source.restarts == 0
    finally:
        await api.stop()


async def test_restart_with_the_secret_starts_a_rolling_restart(
    client: aiohttp.ClientSession,
) -> None:
    api, source = await _serve("s3cret-admin")
    try:
        headers = {"Authorization": "Bearer s3cret-admin"}
        async with client.post(api.url + "/restart", headers=headers) as resp:
            assert resp.status == 202
        assert source.restarts == 1
        source.accept_restart = False
        async with client.post(api.url + "/restart", headers=headers) as resp:
            assert resp.status == 409
    finally:
        await api.stop()


async def test_a_non_utf8_authorization_header_is_refused_403_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, source = await _serve("s3cret-admin")
    assert api.address is not None
    try:
        reader, writer = await asyncio.open_connection(*api.address)
        writer.write(
            b"POST /restart HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xc3\x28\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        async with asyncio.timeout(5):
            status = await reader.readline()
        writer.close()
        assert b" 403 " in status
        assert source.restarts == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    finally:
        await api.stop()


async def test_refused_requests_log_one_warning_per_interval(
    client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    api, _ = await _serve("s3cret-admin")
    try:
        with caplog.at_level(logging.WARNING, logger="shardmgr.httpapi"):
            for _ in range(30):
                headers = {"Authorization": "Bearer nope"}
                async with client.post(api.url + "/restart", headers=headers) as resp:
                    assert resp.status == 403
        refused = [r for r in caplog.records if "admin secret" in r.getMessage()]
        assert len(refused) == 1
    finally:
        await api.stop()
