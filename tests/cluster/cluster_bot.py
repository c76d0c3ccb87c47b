"""The handler the cluster end-to-end tests run in every worker: it obeys ``!`` messages
injected through the fake's ``/_fake/dispatch`` and records what each one produced (one
JSON line in ``$CLUSTER_TEST_OUT``), and offers ``rpc_`` calls to the other workers."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from examples.cluster_commands import ClusterCommands
from workers.cluster import ClusterCallError
from workers.events import Event
from workers.gateway import Gateway

OUT_ENV = "CLUSTER_TEST_OUT"


class Bot(ClusterCommands):
    gateway: Gateway

    async def start(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def _record(self, doc: dict[str, Any]) -> None:
        line = (json.dumps(doc) + "\n").encode()
        fd = os.open(os.environ[OUT_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    async def on_message_create(self, event: Event) -> None:
        content = str(event.data().get("content", ""))
        if not content.startswith("!"):
            return
        started = time.monotonic()
        try:
            result = await self._obey(content)
        except (ClusterCallError, LookupError, ValueError, OSError) as exc:
            result = {"error": type(exc).__name__, "message": str(exc)}
        self._record(
            {
                "content": content,
                "worker": self.gateway.cluster.worker_id,
                "result": result,
                "elapsed_s": time.monotonic() - started,
            }
        )

    async def _obey(self, content: str) -> Any:
        reply = await self.cluster_reply(self.gateway, content)
        if reply is not None:
            return reply
        words = content.split()
        cluster = self.gateway.cluster
        match words:
            case ["!voice", guild, channel]:
                await self.gateway.update_voice_state(guild, None if channel == "-" else channel)
                return "ok"
            case ["!members", guild]:
                found = await self.gateway.request_members(guild, query="", limit=0, wait=True)
                assert found is not None
                return len(found["members"])
            case ["!callall", name, *args]:
                results = await cluster.call_all(name, *args)
                return {
                    "results": {f"{k.host}/{k.worker}": v for k, v in results.results.items()},
                    "errors": {f"{k.host}/{k.worker}": e.reason for k, e in results.errors.items()},
                }
            case ["!call", worker, name, *args]:
                return await cluster.call(name, *args, worker=int(worker))
        return {"error": "unknown command"}

    async def rpc_pid(self) -> int:
        return os.getpid()

    async def rpc_slow(self, seconds: str) -> int:
        self._record({"slow_started": os.getpid()})
        await asyncio.sleep(float(seconds))
        return os.getpid()

    async def rpc_big(self) -> str:
        return "x" * (2 * 1024 * 1024)

    async def rpc_echo(self, value: Any) -> Any:
        return value
