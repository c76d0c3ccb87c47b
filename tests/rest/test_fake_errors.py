"""Bad input through the REST client, in a real worker against the real fake: a malformed
body, an unknown route, a 401 (token reset) and a 403 each give the handler one typed error
with Discord's status and code, the worker survives them (and one the handler lets escape),
and the token appears in no error, log line or metric."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.supervisor.harness import FakeGatewayProc, SupervisorProc, all_connected

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def read_if_there(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


async def wait_for_file(path: Path, sup: SupervisorProc, within_s: float = 30.0) -> bytes:
    deadline = time.monotonic() + within_s
    while (data := read_if_there(path)) is None:
        assert time.monotonic() < deadline, f"no {path.name}: " + sup.stderr.read_text()[-3000:]
        await asyncio.sleep(0.1)
    return data


async def metrics_once(sup: SupervisorProc, needle: str, within_s: float = 30.0) -> str:
    """/metrics once the workers' REST stats (reported every few seconds) hold ``needle``."""
    deadline = time.monotonic() + within_s
    while True:
        async with sup.http.get(sup.url + "/metrics") as r:
            text = await r.text()
        if needle in text:
            return text
        assert time.monotonic() < deadline, f"{needle} never in /metrics"
        await asyncio.sleep(0.2)


async def inject(fake: FakeGatewayProc, content: str, channel_id: str) -> dict[str, Any]:
    body = {"t": "MESSAGE_CREATE", "content": content, "channel_id": channel_id}
    async with fake.http.post(fake.url + "/_fake/dispatch", json=body) as resp:
        assert resp.status == 200, await resp.text()
        doc: dict[str, Any] = await resp.json()
        return doc


async def test_refused_calls_give_typed_errors_and_never_the_token_or_a_dead_worker(
    tmp_path: Path,
) -> None:
    fake = await FakeGatewayProc.start(shards=1, event_rate=0.0)
    try:
        sup = await SupervisorProc.start(
            fake, tmp_path, "--shards", "1", "--handler", "tests.rest.errors_handler:Bot",
            "--intents", "all",
        )  # fmt: skip
        try:
            before = await sup.wait_status(all_connected, 60.0)
            async with fake.http.get(fake.url + "/_fake/guilds?num_shards=1&shard_id=0") as r:
                guild = (await r.json())[0]
            async with fake.http.get(
                f"{fake.api_base}/guilds/{guild}", headers={"Authorization": f"Bot {fake.token}"}
            ) as r:
                channel = (await r.json())["system_channel_id"]
            await fake.rest_fault(status=401, count=1, path=f"/channels/{channel}")
            await fake.rest_fault(status=403, count=1, path=f"/guilds/{guild}")
            await inject(fake, "!errors", channel)
            outcomes = msgspec.json.decode(await wait_for_file(tmp_path / "errors.json", sup))
            later = await inject(fake, "hello", channel)
            await wait_for_file(tmp_path / f"alive-{later['message_id']}", sup)
            after = await sup.status()
            metrics = await metrics_once(sup, 'status="401"')
        finally:
            await sup.close()
        logs = sup.stderr.read_text() + "\n".join(sup.stdout)
    finally:
        await fake.close()

    assert {case: (o["type"], o["status"], o["code"]) for case, o in outcomes.items()} == {
        "malformed": ("BadRequest", 400, 50035),
        "unknown_route": ("NotFound", 404, 0),
        "unauthorized": ("Unauthorized", 401, 0),
        "forbidden": ("Forbidden", 403, 50013),
    }
    assert [w["restarts"] for w in after["workers"]] == [w["restarts"] for w in before["workers"]]
    assert [w["pid"] for w in after["workers"]] == [w["pid"] for w in before["workers"]]
    # the error the handler let escape was logged, with its route and status, not the token
    assert "404 NotFound on GET /no/such/route" in logs
    assert fake.token
    for where, text in {"errors": msgspec.json.encode(outcomes).decode(), "logs": logs}.items():
        assert fake.token not in text, where
    assert fake.token not in metrics
