"""Redis URLs as secrets: read from a file (``--identify-limiter-file``, ``--sink-file``) or
the environment rather than the command line, their TLS parameters, and the pre-flight
check that fails a start whose Redis refuses the credentials.

The URL files hold one line, like the token file; a Kubernetes Secret mounted as a volume
works as is. Their content is never echoed in an error (it holds a password)."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import msgspec

from shardmgr.errors import UserError
from shardmgr.identify.redisconn import connect, safe_url
from workers.logsetup import fields

log = logging.getLogger(__name__)

# redis-py's TLS keyword arguments, accepted as query parameters of redis:// and
# redis-stream:// URLs alike (the limiter passes every query parameter to redis-py; the sink
# passes these through and keeps the rest for itself).
TLS_PARAMS: Final = (
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
    "ssl_min_version",
)
TLS_FILES: Final = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")
PREFLIGHT_TIMEOUT_S: Final = 5.0
# What Redis answers a bad AUTH with (WRONGPASS since 6.0) or a missing one (NOAUTH).
_REFUSALS: Final = ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password")


def read_url_file(path: str, what: str) -> str:
    """The URL in ``path`` (one line, surrounding whitespace ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path}: not UTF-8 text") from None
    if not text:
        raise UserError(f"{what} {path} is empty (it must hold the Redis URL)")
    if "\n" in text:
        raise UserError(f"{what} {path} must hold one line: the Redis URL")
    return text


def check_tls_files(url: str, what: str) -> None:
    """Every TLS file the URL names exists and is readable: found now, it is one line at the
    start instead of a connection error repeated by every retry."""
    query = parse_qs(urlsplit(url).query)
    for name in TLS_FILES:
        for value in query.get(name, []):
            if not os.access(value, os.R_OK):
                raise UserError(f"{what}: {name}={value} does not exist or is not readable")


class UrlFiles(msgspec.Struct, frozen=True, kw_only=True):
    """The Redis URLs after reading the files named by the settings."""

    identify_limiter: str
    sink: str | None


def resolve_url_files(
    *,
    identify_limiter: str,
    identify_limiter_file: str | None,
    sink: str | None,
    sink_file: str | None,
    default_limiter: str = "local",
) -> UrlFiles:
    """A ``*_file`` setting replaces its URL setting; giving both is a mistake."""
    if identify_limiter_file is not None:
        if identify_limiter != default_limiter:
            raise UserError("give either --identify-limiter or --identify-limiter-file, not both")
        identify_limiter = read_url_file(identify_limiter_file, "--identify-limiter-file")
    if sink_file is not None:
        if sink is not None:
            raise UserError("give either --sink or --sink-file, not both")
        sink = read_url_file(sink_file, "--sink-file")
    return UrlFiles(identify_limiter=identify_limiter, sink=sink)


def _refused(exc: BaseException) -> bool:
    from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError

    if isinstance(exc, (AuthenticationError, AuthorizationError)):
        return True
    return isinstance(exc, ResponseError) and any(word in str(exc) for word in _REFUSALS)


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def check_redis(url: str, what: str, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Connect once and PING. Credentials or a TLS handshake that Redis refuses are the
    operator's to fix: one-line UserError. An unreachable Redis is only logged: the limiter
    and the sink wait for it (an outage, not a configuration mistake)."""
    from redis.exceptions import RedisError

    check_tls_files(url, what)
    client: Any = connect(url, socket_timeout_s=timeout_s, what=what)
    try:
        await asyncio.wait_for(client.ping(), timeout_s * 2)
    except (RedisError, OSError, TimeoutError) as exc:
        shown = safe_url(url)
        if _refused(exc):
            raise UserError(
                f"{what}: Redis at {shown} refused the credentials ({_first_line(exc)}); "
                "check the password (and user) in the URL"
            ) from None
        tls = _tls_failure(exc)
        if tls is not None:
            raise UserError(
                f"{what}: TLS with Redis at {shown} failed ({tls.reason or tls}); check "
                "ssl_ca_certs / ssl_certfile / ssl_keyfile"
            ) from None
        log.warning(
            "cannot reach redis at start; carrying on, it is waited for",
            extra=fields(what=what, redis=shown, error=_first_line(exc)),
        )
    finally:
        await client.aclose()


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0]
