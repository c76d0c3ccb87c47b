"""Typed REST errors. Each carries the HTTP status and Discord's error ``code`` and
``message`` from the body; never the token (texts pass through ``workers.redact``)."""

from __future__ import annotations

from typing import Final

import msgspec

from workers.redact import redact

MAX_MESSAGE_CHARS: Final = 300


class HTTPError(Exception):
    """A REST call failed. ``status`` is 0 when no answer came (refused locally)."""

    def __init__(self, status: int, code: int, message: str, route: str = "") -> None:
        self.status = status
        self.code = code
        self.message = redact(message[:MAX_MESSAGE_CHARS])
        self.route = route
        where = f" on {route}" if route else ""
        super().__init__(f"{status} {type(self).__name__}{where}: {self.message} (code {code})")


class BadRequest(HTTPError):
    """400: the body or query is wrong; Discord's ``errors`` detail is in ``message``."""


class Unauthorized(HTTPError):
    """401: the token is invalid or was reset. Never retried."""


class Forbidden(HTTPError):
    """403: the bot lacks a permission. Never retried."""


class NotFound(HTTPError):
    """404: unknown route or object."""


class RateLimited(HTTPError):
    """429 answered again and again (retries exhausted); ``retry_after`` in seconds."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        route: str = "",
        retry_after: float = 0.0,
        scope: str = "",
    ) -> None:
        self.retry_after = retry_after
        self.scope = scope
        super().__init__(status, code, message, route)


class ServerError(HTTPError):
    """5xx after every retry."""


class MalformedResponse(HTTPError):
    """A success status whose body is not the JSON Discord sends."""


class InvalidRequestLimit(HTTPError):
    """Refused locally: too many 401/403/429 answers in the last 10 minutes would get the
    IP banned by Cloudflare."""


class RequestFailed(HTTPError):
    """No HTTP answer at all (connection refused, reset or timed out)."""


class _ErrorBody(msgspec.Struct):
    message: str = ""
    code: int = 0
    # Not ``Raw | None``: msgspec then accepts only null, and Discord's 50035 "Invalid Form
    # Body" (the one error whose detail is in ``errors``) would be taken for a non-JSON body.
    errors: msgspec.Raw = msgspec.Raw()


_decoder: Final = msgspec.json.Decoder(_ErrorBody)
_BY_STATUS: Final[dict[int, type[HTTPError]]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    429: RateLimited,
}


def parse_error_body(body: bytes) -> tuple[int, str]:
    """Discord's ``(code, message)``; a body that is not its JSON (an HTML error page from
    the edge) gives code 0 and a short description instead of the page."""
    try:
        parsed = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return 0, f"non-JSON error body ({len(body)} bytes)"
    message = parsed.message
    if parsed.errors and bytes(parsed.errors) != b"null":
        message = f"{message}: {bytes(parsed.errors).decode('utf-8', 'replace')}"
    return parsed.code, message


def error_for(status: int, body: bytes, route: str) -> HTTPError:
    code, message = parse_error_body(body)
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else HTTPError)
    return cls(status, code, message or f"HTTP {status}", route)
