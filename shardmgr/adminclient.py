"""Talking to a running supervisor's HTTP port from the command line (`status`, `presence`):
one request function, so every sub-command words an unreachable supervisor the same way."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from shardmgr.errors import UserError


def request_json(
    address: str,
    path: str,
    *,
    body: object = None,
    secret: str | None = None,
    timeout_s: float = 5.0,
    http_error: Callable[[urllib.error.HTTPError], str] | None = None,
) -> Any:
    """GET (or POST ``body`` as JSON) ``http://address/path`` and return the decoded JSON.
    Every failure becomes a one-line ``UserError``."""
    url = f"http://{address}{path}"
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers=headers,
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = f": {http_error(exc)}" if http_error is not None else ""
        raise UserError(f"{url} answered {exc.code}{detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(
            f"no supervisor answers at {address} ({reason}); is `shardmgr start` running, and "
            "on which --http address?"
        ) from None
    except ValueError:
        raise UserError(f"{url} did not return JSON; is that a shardmgr supervisor?") from None
