"""Every supervisor setting in one typed object: flags > SHARDMGR_* env > TOML > defaults.

Each value is checked and parsed once, here: the typed views (``shard_selection``,
``http_address``, ``intents_mask``, ``limiter``, ``handler_target``, ``app_path``) are
computed on first use and cached, and ``load_settings`` touches every one of them, so a
mistake is one line naming the flag, variable or TOML key the user wrote."""

from __future__ import annotations

import difflib
import functools
import os
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from shardmgr.configcheck import Where, check_settings
from shardmgr.errors import UserError
from shardmgr.plan import host_slice
from shardmgr.presence import presence_payload
from shardmgr.settingvalues import (
    HttpAddress,
    LimiterSpec,
    ShardIds,
    join_list,
    parse_limiter,
)
from shardmgr.settingvalues import parse_http_address as _parse_http
from shardmgr.settingvalues import parse_shard_ids as _parse_ids
from workers.protocol import parse_intents

ENV_PREFIX: Final = "SHARDMGR_"
DISCORD_API: Final = "https://discord.com/api/v10"
# ``SHARDMGR_*`` variables that are not settings: read by workers (the sink URL, the jsonl
# handler's file), naming the TOML file, or the fake gateway's token. Anything else with the
# prefix that names no setting is a typo, warned about with the nearest name.
NON_SETTING_ENV: Final = frozenset(
    {"SHARDMGR_CONFIG", "SHARDMGR_SINK_URL", "SHARDMGR_JSONL", "SHARDMGR_FAKE_TOKEN"}
)
BOOL_WORDS: Final = {
    "yes": True, "no": False, "on": True, "off": False,
    "true": True, "false": False, "1": True, "0": False,
}  # fmt: skip
SINK_HANDLER: Final = "shardmgr.sinks.redis_stream:sink"
DEFAULT_HANDLER: Final = "shardmgr.handlers:null"
# Discord bans an IP after 10,000 401/403/429 answers in 10 minutes; keep well below.
REST_INVALID_LIMIT: Final = 8000


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return os.path.join(base, "shardmgr")


DEFAULT_LOOP_STALL_S: Final = 5.0


class Settings(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """The supervisor's whole configuration. Field names are the TOML keys; the env name is
    ``SHARDMGR_`` + the upper-cased name; the flag is ``--`` + the name with dashes, without
    the ``_s`` of durations. The typed views raise ValueError on a bad value, which
    ``load_settings`` words as one line; ``dict=True`` only makes room for their cache."""

    shards: str = "auto"
    total_shards: int | None = None
    shard_ids: str | None = None
    shards_per_worker: int | None = None
    workers: int | None = None
    host_index: int | None = None
    host_count: int | None = None
    handler: str = DEFAULT_HANDLER
    # Where ``--handler``'s module is imported from, before the Python path (uvicorn's
    # --app-dir): the working directory unless told otherwise.
    app_dir: str = "."
    handler_backlog: int = 1000
    handler_batch: int = 100
    drain_timeout_s: float = 5.0
    intents: str = "default"
    compress: str = "zlib-stream"
    large_threshold: int = 250
    api_base: str = DISCORD_API
    http: str = "127.0.0.1:9191"
    token_file: str | None = None
    admin_secret: str | None = None
    identify_limiter: str = "local"
    # Files holding those URLs (one line, like the token file), so the password is neither
    # on the command line nor in the environment: read by ``shardmgr start``.
    identify_limiter_file: str | None = None
    sink: str | None = None
    sink_file: str | None = None
    discovery_attempts: int = 6
    discovery_backoff_s: float = 0.5
    identify_window_s: float = 5.0
    identify_reserve: int = 25
    # A shard's owner lease in the shared Redis (renewed every third): how long a dead
    # host's shards wait before another host takes them over.
    owner_lease_s: float = 15.0
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 15.0
    # None: 5 s, or a third of ping_timeout_s when that is shorter (``loop_stall``)
    loop_stall_s: float | None = None
    start_timeout_s: float = 30.0
    progress_interval_s: float = 5.0
    restart_backoff_base_s: float = 1.0
    restart_backoff_cap_s: float = 60.0
    restart_stable_s: float = 60.0
    crash_loop_restarts: int = 5
    shutdown_timeout_s: float = 10.0
    keep_sessions: bool = False
    state_dir: str = msgspec.field(default_factory=default_state_dir)
    state_file: str | None = None
    resume_window_s: float = 120.0
    # Sessions reach the state file this often while they change (a kill -9 loses at most this).
    sessions_save_interval_s: float = 2.0
    log_level: str = "INFO"
    log_json: bool = False
    # Core dumps carry the token: off (and processes non-dumpable) unless debugging a crash.
    allow_core_dumps: bool = False
    # --- gateway session options (discordrb's Gateway equivalents) ---
    heartbeat_ack_check: bool = True
    identify_browser: str = "shardmgr"
    identify_device: str = "shardmgr"
    presence_status: str | None = None
    presence_activity: str | None = None
    presence_activity_type: str = "playing"
    max_message_bytes: int = 64 * 1024 * 1024
    # --- REST client (issue 14) ---
    rest_global_limit: int = 50
    rest_limiter: str | None = None  # None: the identify limiter's (local or redis://)
    rest_invalid_limit: int = REST_INVALID_LIMIT
    # --- one bot across many workers (issue 16): commands to any shard, cluster calls ---
    command_timeout_s: float = 10.0
    call_timeout_s: float = 10.0
    call_max_bytes: int = 1024 * 1024

    # --- resharding without downtime (issue 19, shardmgr.reshard) ---
    # False: a 4011 stops every worker and starts the new plan (no overlap, half the memory)
    reshard_in_background: bool = True
    reshard_check_interval_s: float = 8 * 3600.0
    reshard_at_guilds: int = 2000
    reshard_timeout_s: float = 900.0
    reshard_overlap_s: float = 2.0

    @property
    def loop_stall(self) -> float:
        """The worker watchdog's threshold: well under the ping timeout, so the blocked
        handler's stack is logged before the worker is killed as hung."""
        if self.loop_stall_s is not None:
            return self.loop_stall_s
        return min(DEFAULT_LOOP_STALL_S, self.ping_timeout_s / 3)

    @property
    def state_path(self) -> Path:
        """Hosts that share a state directory each run their own slice of the shards, so
        the default file name says which slice it holds."""
        if self.state_file:
            return Path(self.state_file)
        name = "sessions.json"
        if self.total_shards is not None:
            first, last = self._slice()
            name = f"sessions-{first}-{last}-of-{self.total_shards}.json"
        return Path(self.state_dir) / name

    def _slice(self) -> tuple[int, int]:
        assert self.total_shards is not None
        if self.shard_selection is not None:
            return self.shard_selection.first, self.shard_selection.last
        if self.host_index is not None and self.host_count is not None:
            ids = host_slice(self.total_shards, self.host_index, self.host_count)
            if ids:
                return ids[0], ids[-1]
        return 0, self.total_shards - 1

    @functools.cached_property
    def shard_selection(self) -> ShardIds | None:
        """``shard_ids`` parsed: this host's shard ids, or None for the whole bot."""
        return None if self.shard_ids is None else _parse_ids(self.shard_ids)

    @functools.cached_property
    def http_address(self) -> HttpAddress:
        return _parse_http(self.http)

    @functools.cached_property
    def limiter(self) -> LimiterSpec:
        return parse_limiter(self.identify_limiter)

    @property
    def handler_target(self) -> str:
        """The handler workers load: the sink's when ``--sink`` is given."""
        return SINK_HANDLER if self.sink else self.handler

    @functools.cached_property
    def app_path(self) -> str:
        """``app_dir`` made absolute once, so a later ``chdir`` cannot move it."""
        return os.path.abspath(self.app_dir)

    @property
    def pid_path(self) -> Path:
        return Path(self.state_dir) / "supervisor.pid"

    @functools.cached_property
    def intents_mask(self) -> int:
        return parse_intents(self.intents)

    @property
    def identify_properties(self) -> dict[str, str]:
        """Identify ``properties`` beyond ``os``, which the worker fills in (its platform)."""
        return {"browser": self.identify_browser, "device": self.identify_device}

    @property
    def presence(self) -> dict[str, object] | None:
        """The initial presence sent in Identify (op 3's shape), or None to send none."""
        if self.presence_status is None and self.presence_activity is None:
            return None
        return presence_payload(
            self.presence_status or "online", self.presence_activity, self.presence_activity_type
        )


FIELD_TYPES: Final[dict[str, Any]] = {f.name: f.type for f in msgspec.structs.fields(Settings)}
FIELD_NAMES: Final = tuple(FIELD_TYPES)
# Settings whose text is a list (``intents = ["GUILDS", "GUILD_MESSAGES"]``, ``shard_ids =
# [0, 1, 2]``): a TOML list is joined the way the flag would be written.
LIST_SETTINGS: Final = frozenset({"intents", "shard_ids"})
# A secret's value never appears in an error.
SECRET_SETTINGS: Final = frozenset({"admin_secret"})
_UNITS: Final = {int: "a whole number", float: "a number", bool: "a yes/no value"}


def flag_name(name: str) -> str:
    """``identify_window_s`` -> ``--identify-window``: durations drop their ``_s``."""
    return "--" + name.removesuffix("_s").replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _base_type(ftype: Any) -> Any:
    """``int | None`` -> ``int``."""
    if isinstance(ftype, types.UnionType):
        args = [a for a in ftype.__args__ if a is not type(None)]
        return args[0] if len(args) == 1 else ftype
    return ftype


def _optional(ftype: Any) -> bool:
    return isinstance(ftype, types.UnionType) and type(None) in ftype.__args__


def parse_bool(text: str) -> bool:
    try:
        return BOOL_WORDS[text.strip().lower()]
    except KeyError:
        raise ValueError("must be yes/no, on/off, true/false or 1/0") from None


def _coerce(name: str, value: Any) -> Any:
    """Text from a flag or variable, or a TOML value of its natural type, to the field's
    type. Raises ValueError (or TypeError) with a message that starts after the name."""
    ftype = FIELD_TYPES[name]
    base = _base_type(ftype)
    if isinstance(value, str) and _optional(ftype) and value.strip().lower() in ("", "none"):
        return None
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return parse_bool(value)
        raise TypeError
    if isinstance(value, bool):  # TOML ``true`` is not a number or a name
        raise TypeError
    if base is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int(value.strip())
        raise TypeError
    if base is float:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise TypeError
    if isinstance(value, list) and name in LIST_SETTINGS:
        return join_list(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # ``shards = 8``, ``intents = 513``
    if isinstance(value, str):
        return value
    raise TypeError


def _convert(name: str, value: Any, where: Where, source: str = "") -> Any:
    if name not in FIELD_TYPES:
        raise UserError(f"{source}: unknown setting {name!r}{_nearest_hint(name, FIELD_NAMES)}")
    try:
        return _coerce(name, value)
    except ValueError as exc:
        if str(exc).startswith("must be"):
            raise UserError(f"{where(name)} {exc}, not {_shown(name, value)}") from None
        unit = _UNITS.get(_base_type(FIELD_TYPES[name]), "text")
        raise UserError(f"{where(name)} must be {unit}, not {_shown(name, value)}") from None
    except TypeError:
        unit = _UNITS.get(_base_type(FIELD_TYPES[name]), "text")
        raise UserError(f"{where(name)} must be {unit}, not {_shown(name, value)}") from None


def _shown(name: str, value: Any) -> str:
    return "(hidden)" if name in SECRET_SETTINGS else repr(value)


def _nearest_hint(name: str, candidates: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _toml_layer(path: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    if path is None:
        return {}, {}
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"config file {path}: {exc}") from None
    # Accept both a flat file and one with everything under [shardmgr].
    table = doc.get("shardmgr", doc)
    if not isinstance(table, dict):
        raise UserError(f"config file {path}: [shardmgr] must be a table")
    names = {k: k.replace("-", "_") for k in table}
    labels = {n: f"{path}: {k}" for k, n in names.items()}
    return (
        {n: _convert(n, table[k], labels.__getitem__, path) for k, n in names.items()},
        labels,
    )


def _env_layer(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    layer: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for name in FIELD_NAMES:
        key = env_name(name)
        if key in env:
            labels[name] = key
            layer[name] = _convert(name, env[key], labels.__getitem__)
    return layer, labels


def unknown_env_warnings(env: Mapping[str, str] | None = None) -> list[str]:
    """One line per ``SHARDMGR_*`` variable that names no setting (a typo is otherwise
    silently ignored, unlike a TOML key), with the nearest setting's variable."""
    env = os.environ if env is None else env
    known = [env_name(n) for n in FIELD_NAMES]
    out: list[str] = []
    for key in sorted(env):
        if not key.startswith(ENV_PREFIX) or key in NON_SETTING_ENV or key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        out.append(f"environment variable {key} is not a setting; {hint}it is ignored")
    return out


def load_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> Settings:
    """Merge the layers. ``flags`` holds only the options the user actually typed (None =
    not given); ``config_path`` may also come from ``SHARDMGR_CONFIG``."""
    env = os.environ if env is None else env
    path = config_path if config_path is not None else env.get(ENV_PREFIX + "CONFIG")
    merged: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for layer, layer_labels in (_toml_layer(path), _env_layer(env)):
        merged.update(layer)
        labels.update(layer_labels)
    for name, value in flags.items():
        if value is not None:
            labels[name] = flag_name(name)
            merged[name] = _convert(name, value, flag_name, "command line")
    settings = Settings(**merged)
    validate(settings, lambda name: labels.get(name) or flag_name(name))
    return settings


def validate(s: Settings, where: Where = flag_name) -> None:
    """Mistakes that can be caught before touching the network, each as one line naming
    the setting as the user gave it (``where``: flag, variable or TOML key); the checks
    live in ``shardmgr.configcheck``."""
    check_settings(s, where, default_handler=DEFAULT_HANDLER)


def parse_shard_ids(text: str) -> tuple[int, int]:
    """The first and last of ``--shard-ids`` (kept for callers that name a slice by them)."""
    try:
        ids = _parse_ids(text)
    except ValueError as exc:
        raise UserError(f"--shard-ids {exc}") from None
    return ids.first, ids.last


def parse_http_address(text: str) -> HttpAddress:
    try:
        return _parse_http(text)
    except ValueError as exc:
        raise UserError(f"--http {exc}") from None
