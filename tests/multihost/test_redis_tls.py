"""TLS the same way for the limiter and the sink: ``ssl_ca_certs`` (and client certificate)
query parameters on either URL, against a real redis-server speaking only TLS."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

from shardmgr.errors import UserError
from shardmgr.redisurl import check_redis
from shardmgr.sinks.redis_stream import RedisStreamSink
from tests.conftest import require_binary, servers_required
from tests.multihost.redis_server import RedisServer
from workers.events import Event

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(where: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "1", "-subj", "/CN=shardmgr-test-ca", cwd=where)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=127.0.0.1", cwd=where)  # fmt: skip
    (where / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext",
            cwd=where)  # fmt: skip


class TlsRedisServer(RedisServer):
    def start(self, timeout: float = 10.0) -> None:
        d = self.workdir
        self.proc = subprocess.Popen(
            [self.binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(d / "server.pem"), "--tls-key-file", str(d / "server.key"),
             "--tls-ca-cert-file", str(d / "ca.pem"), "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", str(d), "--logfile", ""],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=d,
        )  # fmt: skip
        self._wait_ready(timeout)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsRedisServer]:
    require_binary("redis-server")
    require_binary("openssl")
    make_certificates(tmp_path)
    server = TlsRedisServer(tmp_path)
    try:
        server.start()
    except RuntimeError as exc:
        if servers_required():
            pytest.fail(f"this redis-server has no TLS: {exc}", pytrace=False)
        pytest.skip(f"this redis-server has no TLS: {exc}")
    try:
        yield server
    finally:
        server.stop()


async def test_the_sink_writes_over_tls_with_the_ca_given_in_its_url(
    tls_server: TlsRedisServer,
) -> None:
    ca = tls_server.workdir / "ca.pem"
    sink = RedisStreamSink(
        f"rediss-stream://127.0.0.1:{tls_server.port}/0?stream=ev&ssl_ca_certs={ca}"
    )
    try:
        await sink.handle_batch([Event(0, 1, "READY", msgspec.Raw(b"{}"), session_id="s")])
    finally:
        await sink.close()
    client = aioredis.from_url(f"rediss://127.0.0.1:{tls_server.port}/0", ssl_ca_certs=str(ca))
    try:
        assert await client.xlen("ev") == 1
    finally:
        await client.aclose()


async def test_the_preflight_accepts_the_ca_and_refuses_an_unverifiable_server(
    tls_server: TlsRedisServer,
) -> None:
    url = f"rediss://127.0.0.1:{tls_server.port}/0"
    await check_redis(f"{url}?ssl_ca_certs={tls_server.workdir / 'ca.pem'}", "--identify-limiter")
    with pytest.raises(UserError, match=r"TLS with Redis at .* failed"):
        await check_redis(url, "--identify-limiter")
