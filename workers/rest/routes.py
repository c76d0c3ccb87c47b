"""Route templates and their rate-limit keys.

Discord splits a bucket by the top-level ("major") parameters: ``channel_id``,
``guild_id`` and ``webhook_id`` (+ ``webhook_token``). The key that several workers must
share is the *owner key*: every route under one channel (guild, webhook) has the same one,
so whatever Discord bucket several of those routes share is always in one worker's hands.
Interaction routes (``/interactions/{interaction_id}/{interaction_token}/...`` and
followups on ``/webhooks/{application_id}/{interaction_token}``) belong to the one worker
that received the interaction, and do not count against the global limit."""

from __future__ import annotations

import functools
import hashlib
import string
from typing import Final
from urllib.parse import quote

import msgspec

MAJOR_PARAMS: Final = ("channel_id", "guild_id", "webhook_id")
INTERACTION_TOKEN: Final = "interaction_token"
_FORMATTER: Final = string.Formatter()


class Route(msgspec.Struct, frozen=True):
    method: str
    template: str  # the label in metrics: never contains ids or tokens
    path: str
    owner_key: str  # who may send on it: shared through the supervisor unless ``local``
    local: bool  # only this worker can ever use the key (interaction tokens)
    exempt_global: bool

    @property
    def route_id(self) -> str:
        """Bucket key before Discord names the bucket: method, template and majors."""
        return f"{self.method} {self.template} {self.owner_key}"

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"


def _digest(secret: str) -> str:
    # Keys travel over IPC and into Redis; a webhook or interaction token must not.
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1024)
def template_fields(template: str) -> tuple[str, ...]:
    """The parameter names of a template (cached: templates are few, calls are many)."""
    return tuple(name for _, name, _, _ in _FORMATTER.parse(template) if name)


def _quote(value: str | int) -> str:
    text = str(value)
    # Snowflakes are digits: nothing to quote (the common case, kept cheap).
    return text if text.isdigit() else quote(text, safe="")


def compile_route(method: str, template: str, params: dict[str, str | int]) -> Route:
    """Fill ``template`` with ``params`` (each URL-quoted); ValueError names what is
    missing or left over, so a typo fails before anything is sent."""
    if not template.startswith("/"):
        raise ValueError(f"route template must start with '/': {template!r}")
    method = method.upper()
    names = template_fields(template)
    if len(params) != len(names) or not all(n in params for n in names):
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError(f"route {template} needs parameter(s) {', '.join(missing)}")
        extra = sorted(set(params) - set(names))
        raise ValueError(f"route {template} has no parameter(s) {', '.join(extra)}")
    path = template.format_map({n: _quote(params[n]) for n in names}) if names else template
    if template.startswith("/interactions/"):
        ident = str(params.get("interaction_id", ""))
        return Route(method, template, path, f"interaction:{ident}", True, True)
    if INTERACTION_TOKEN in params:
        key = f"interaction-webhook:{_digest(str(params[INTERACTION_TOKEN]))}"
        return Route(method, template, path, key, True, True)
    if "webhook_id" in params and "webhook_token" in params:
        key = f"webhook:{params['webhook_id']}:{_digest(str(params['webhook_token']))}"
        return Route(method, template, path, key, False, False)
    for major in MAJOR_PARAMS:
        if major in params:
            return Route(method, template, path, f"{major[:-3]}:{params[major]}", False, False)
    return Route(method, template, path, "-", False, False)
