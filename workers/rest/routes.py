"""Route templates and their rate-limit keys.

Discord splits a bucket by the top-level ("major") parameters: ``channel_id``,
``guild_id`` and ``webhook_id`` (+ ``webhook_token``). The key that several workers must
share is the *owner key*: every route under one channel (guild, webhook) has the same one,
so whatever Discord bucket several of those routes share is always in one worker's hands.
Interaction routes (``/interactions/{interaction_id}/{interaction_token}/...`` and
followups on ``/webhooks/{application_id}/{interaction_token}``) belong to the one worker
that received the interaction, and do not count against the global limit."""

from __future__ import annotations

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


def template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in _FORMATTER.parse(template) if name]


def compile_route(method: str, template: str, params: dict[str, str | int]) -> Route:
    """Fill ``template`` with ``params`` (each URL-quoted); ValueError names what is
    missing or left over, so a typo fails before anything is sent."""
    if not template.startswith("/"):
        raise ValueError(f"route template must start with '/': {template!r}")
    method = method.upper()
    names = template_fields(template)
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"route {template} needs parameter(s) {', '.join(missing)}")
    extra = sorted(set(params) - set(names))
    if extra:
        raise ValueError(f"route {template} has no parameter(s) {', '.join(extra)}")
    values = {n: quote(str(params[n]), safe="") for n in names}
    path = template.format_map(values)
    if template.startswith("/interactions/"):
        ident = str(params.get("interaction_id", ""))
        return Route(method, template, path, f"interaction:{ident}", True, True)
    if INTERACTION_TOKEN in names:
        key = f"interaction-webhook:{_digest(str(params[INTERACTION_TOKEN]))}"
        return Route(method, template, path, key, True, True)
    majors = [n for n in MAJOR_PARAMS if n in names]
    if "webhook_id" in majors and "webhook_token" in names:
        key = f"webhook:{params['webhook_id']}:{_digest(str(params['webhook_token']))}"
    elif majors:
        first = majors[0]
        key = f"{first.removesuffix('_id')}:{params[first]}"
    else:
        key = "-"
    return Route(method, template, path, key, False, False)
