"""Every supervisor setting in one typed object: flags > SHARDMGR_* env > TOML > defaults."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from shardmgr.errors import UserError
from shardmgr.plan import host_slice
from shardmgr.redisconn import safe_url
from shardmgr.token import bot_id_from_token
from workers.codec import COMPRESS_MODES
from workers.protocol import parse_intents

ENV_PREFIX: Final = "SHARDMGR_"
TOKEN_ENV: Final = "DISCORD_TOKEN"
DISCORD_API: Final = "https://discord.com/api/v10"
PRESENCE_STATUSES: Final = ("online", "dnd", "idle", "invisible")
# Discord's activity types by name (bots may not use 4 "custom" with a name only: it shows
# ``state``, so a custom activity's text goes there).
ACTIVITY_TYPES: Final = {
    "playing": 0,
    "streaming": 1,
    "listening": 2,
    "watching": 3,
    "custom": 4,
    "competing": 5,
}
MIN_MESSAGE_BYTES: Final = 1024 * 1024
DEFAULT_HANDLER: Final = "shardmgr.handlers:null"
LARGE_THRESHOLD_RANGE: Final = (50, 250)
# Discord bans an IP after 10,000 401/403/429 answers in 10 minutes; keep well below.
REST_INVALID_LIMIT: Final = 8000
REST_INVALID_MAX: Final = 9500
REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return os.path.join(base, "shardmgr")


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """The supervisor's whole configuration. Field names are the TOML keys; the env name is
    ``SHARDMGR_`` + the upper-cased name; the flag is ``--`` + the name with dashes."""

    shards: str = "auto"
    total_shards: int | None = None
    shard_ids: str | None = None
    shards_per_worker: int | None = None
    workers: int | None = None
    host_index: int | None = None
    host_count: int | None = None
    handler: str = DEFAULT_HANDLER
    intents: str = "default"
    compress: str = "zlib-stream"
    large_threshold: int = 250
    api_base: str = DISCORD_API
    http: str = "127.0.0.1:9191"
    token_file: str | None = None
    admin_secret: str | None = None
    identify_limiter: str = "local"
    sink: str | None = None
    discovery_attempts: int = 6
    discovery_backoff_s: float = 0.5
    identify_window_s: float = 5.0
    identify_reserve: int = 25
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 15.0
    start_timeout_s: float = 30.0
    restart_backoff_base_s: float = 1.0
    restart_backoff_cap_s: float = 60.0
    restart_stable_s: float = 60.0
    crash_loop_restarts: int = 5
    shutdown_timeout_s: float = 10.0
    keep_sessions: bool = False
    state_dir: str = msgspec.field(default_factory=default_state_dir)
    state_file: str | None = None
    resume_window_s: float = 120.0
    log_level: str = "INFO"
    log_json: bool = False
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
        if self.shard_ids is not None:
            return parse_shard_ids(self.shard_ids)
        if self.host_index is not None and self.host_count is not None:
            ids = host_slice(self.total_shards, self.host_index, self.host_count)
            if ids:
                return ids[0], ids[-1]
        return 0, self.total_shards - 1

    @property
    def pid_path(self) -> Path:
        return Path(self.state_dir) / "supervisor.pid"

    @property
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


def presence_payload(
    status: str, activity: str | None, activity_type: str = "playing", url: str | None = None
) -> dict[str, object]:
    """Op 3's ``d``: one activity named ``activity`` (or none)."""
    activities: list[dict[str, object]] = []
    if activity is not None:
        kind = ACTIVITY_TYPES[activity_type]
        entry: dict[str, object] = {"name": activity, "type": kind}
        if kind == ACTIVITY_TYPES["custom"]:
            # Discord shows a custom status's ``state``; ``name`` must still be present.
            entry = {"name": "Custom Status", "type": kind, "state": activity}
        if url is not None:
            entry["url"] = url
        activities.append(entry)
    return {"since": None, "activities": activities, "status": status, "afk": False}


FIELD_TYPES: Final[dict[str, Any]] = {f.name: f.type for f in msgspec.structs.fields(Settings)}
FIELD_NAMES: Final = tuple(FIELD_TYPES)


def _convert(name: str, value: Any, source: str) -> Any:
    if name not in FIELD_TYPES:
        raise UserError(f"{source}: unknown setting {name!r}")
    ftype = FIELD_TYPES[name]
    if (
        isinstance(value, str)
        and ftype is not str
        and value.strip().lower() in ("", "none")
        and "None" in str(ftype)
    ):
        return None
    try:
        return msgspec.convert(value, ftype, strict=False)
    except msgspec.ValidationError as exc:
        shown = "(hidden)" if name == "admin_secret" else repr(value)
        raise UserError(f"{source}: bad value {shown} for {name}: {exc}") from None


def _toml_layer(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
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
    return {k.replace("-", "_"): _convert(k.replace("-", "_"), v, path) for k, v in table.items()}


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name in FIELD_NAMES:
        key = ENV_PREFIX + name.upper()
        if key in env:
            layer[name] = _convert(name, env[key], f"environment {key}")
    return layer


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
    merged.update(_toml_layer(path))
    merged.update(_env_layer(env))
    merged.update(
        {k: _convert(k, v, f"--{k.replace('_', '-')}") for k, v in flags.items() if v is not None}
    )
    settings = Settings(**merged)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Mistakes that can be caught before touching the network, each as one line."""
    if s.shards != "auto":
        try:
            n = int(s.shards)
        except ValueError:
            raise UserError(f"--shards must be 'auto' or a number, not {s.shards!r}") from None
        if n < 1:
            raise UserError("--shards must be at least 1")
    if s.total_shards is not None and s.total_shards < 1:
        raise UserError("--total-shards must be at least 1")
    if s.shard_ids is not None:
        if s.total_shards is None:
            raise UserError("--shard-ids needs --total-shards (the bot's whole shard count)")
        _first, last = parse_shard_ids(s.shard_ids)
        if last >= s.total_shards:
            raise UserError(
                f"--shard-ids {s.shard_ids} is outside --total-shards {s.total_shards} "
                f"(ids go from 0 to {s.total_shards - 1})"
            )
    if (s.host_index is None) != (s.host_count is None):
        raise UserError("SHARDMGR_HOST_INDEX and SHARDMGR_HOST_COUNT must be set together")
    if s.host_count is not None and s.host_index is not None:
        if s.host_count < 1 or not 0 <= s.host_index < s.host_count:
            raise UserError(
                f"host index {s.host_index} must be between 0 and host count {s.host_count} - 1"
            )
        if s.total_shards is None:
            raise UserError("SHARDMGR_HOST_INDEX/HOST_COUNT need --total-shards")
        if s.shard_ids is not None:
            raise UserError("use either --shard-ids or SHARDMGR_HOST_INDEX/HOST_COUNT, not both")
    if s.shards_per_worker is not None and s.workers is not None:
        raise UserError("use either --shards-per-worker or --workers, not both")
    if s.shards_per_worker is not None and s.shards_per_worker < 1:
        raise UserError(f"--shards-per-worker must be at least 1, not {s.shards_per_worker}")
    if s.workers is not None and s.workers < 1:
        raise UserError(f"--workers must be at least 1, not {s.workers}")
    if s.compress not in COMPRESS_MODES:
        modes = ", ".join(COMPRESS_MODES)
        raise UserError(f"--compress must be one of {modes}, not {s.compress!r}")
    try:
        s.intents_mask  # noqa: B018 - parse once to surface the error early
    except ValueError as exc:
        raise UserError(f"--intents: {exc}") from None
    if ":" not in s.handler:
        raise UserError(f"--handler must look like module:attribute, not {s.handler!r}")
    if not LARGE_THRESHOLD_RANGE[0] <= s.large_threshold <= LARGE_THRESHOLD_RANGE[1]:
        low, high = LARGE_THRESHOLD_RANGE
        raise UserError(f"--large-threshold must be between {low} and {high} (Discord's range)")
    parse_http_address(s.http)
    if s.discovery_attempts < 1:
        raise UserError("discovery-attempts must be at least 1")
    for name in (
        "discovery_backoff_s",
        "identify_window_s",
        "ping_interval_s",
        "ping_timeout_s",
        "start_timeout_s",
        "restart_backoff_base_s",
        "restart_backoff_cap_s",
        "restart_stable_s",
        "shutdown_timeout_s",
        "resume_window_s",
    ):
        if getattr(s, name) <= 0:
            raise UserError(f"{name.replace('_', '-')} must be positive")
    if s.ping_timeout_s <= s.ping_interval_s:
        raise UserError(
            f"ping-timeout-s ({s.ping_timeout_s:g}) must be longer than ping-interval-s "
            f"({s.ping_interval_s:g}), or every worker looks hung"
        )
    if s.crash_loop_restarts < 1:
        raise UserError("crash-loop-restarts must be at least 1")
    if s.identify_reserve < 0:
        raise UserError("identify-reserve must be 0 or more")
    _validate_redis(s)
    _validate_rest(s)
    _validate_gateway_options(s)
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise UserError(f"--log-level must be debug, info, warning or error, not {s.log_level!r}")


def _validate_gateway_options(s: Settings) -> None:
    if s.max_message_bytes < MIN_MESSAGE_BYTES:
        raise UserError(
            f"--max-message-bytes must be at least {MIN_MESSAGE_BYTES} (1 MiB): READY and "
            f"GUILD_CREATE messages are often that large, not {s.max_message_bytes}"
        )
    if s.presence_status is not None and s.presence_status not in PRESENCE_STATUSES:
        raise UserError(
            f"--presence-status must be one of {', '.join(PRESENCE_STATUSES)}, "
            f"not {s.presence_status!r}"
        )
    if s.presence_activity_type not in ACTIVITY_TYPES:
        raise UserError(
            f"--presence-activity-type must be one of {', '.join(ACTIVITY_TYPES)}, "
            f"not {s.presence_activity_type!r}"
        )
    if s.presence_activity is not None and not 1 <= len(s.presence_activity) <= 128:
        raise UserError("--presence-activity must be 1 to 128 characters")
    for name in ("identify_browser", "identify_device"):
        if not getattr(s, name).strip():
            raise UserError(f"--{name.replace('_', '-')} must not be empty")


def _validate_rest(s: Settings) -> None:
    if s.rest_global_limit < 1:
        raise UserError("--rest-global-limit must be at least 1 (Discord's default is 50)")
    if not 1 <= s.rest_invalid_limit <= REST_INVALID_MAX:
        raise UserError(
            f"--rest-invalid-limit must be 1 to {REST_INVALID_MAX}: Discord bans the IP at "
            "10,000 answers with 401/403/429 in 10 minutes"
        )
    limiter = s.rest_limiter
    if limiter not in (None, "local") and not limiter.startswith(REDIS_SCHEMES):
        raise UserError(
            f"--rest-limiter must be 'local' or a redis:// URL, not {safe_url(limiter)!r}"
        )


def _validate_redis(s: Settings) -> None:
    if s.identify_limiter != "local":
        if not s.identify_limiter.startswith(("redis://", "rediss://", "unix://")):
            raise UserError(
                "--identify-limiter must be 'local' or a redis:// URL, not "
                f"{safe_url(s.identify_limiter)!r}"
            )
        try:
            import shardmgr.identify_redis  # noqa: F401 - only to know it can be imported
        except ImportError:
            raise UserError(
                "--identify-limiter redis://... needs the redis extra: "
                "pip install 'shardmgr[redis]'"
            ) from None
    if s.sink is None:
        return
    if not s.sink.startswith(("redis-stream://", "rediss-stream://")):
        raise UserError(f"--sink must be a redis-stream:// URL, not {safe_url(s.sink)!r}")
    if s.handler != DEFAULT_HANDLER:
        raise UserError("--sink replaces the handler: give either --sink or --handler, not both")
    # Check stream=/maxlen=/batch= now: found in the workers, a typo would crash-loop them.
    try:
        from shardmgr.sinks.redis_stream import SinkConfig
    except ImportError:
        raise UserError("--sink needs the redis extra: pip install 'shardmgr[redis]'") from None
    SinkConfig.parse(s.sink)


def parse_shard_ids(text: str) -> tuple[int, int]:
    """``"A-B"`` (inclusive) or ``"A"``."""
    first_s, sep, last_s = text.partition("-")
    try:
        first = int(first_s)
        last = int(last_s) if sep else first
    except ValueError:
        raise UserError(f"--shard-ids must look like A-B (e.g. 0-15), not {text!r}") from None
    if first < 0 or last < first:
        raise UserError(f"--shard-ids {text}: need 0 <= A <= B")
    return first, last


def parse_http_address(text: str) -> tuple[str, int]:
    host, sep, port_s = text.rpartition(":")
    if not sep or not host:
        raise UserError(f"--http must look like HOST:PORT (e.g. 127.0.0.1:9191), not {text!r}")
    try:
        port = int(port_s)
    except ValueError:
        raise UserError(f"--http port must be a number, not {port_s!r}") from None
    if not 0 <= port <= 65535:
        raise UserError(f"--http port {port} is out of range")
    return host.strip("[]"), port


def load_token(settings: Settings, flag_token_file: str | None, env: Mapping[str, str]) -> str:
    """The bot token: ``--token-file`` beats ``DISCORD_TOKEN``, which beats a token file named in
    the environment or TOML. Never an argument, so ``ps`` cannot show it."""
    path = flag_token_file
    if path is None and env.get(TOKEN_ENV):
        token = env[TOKEN_ENV].strip()
        source = TOKEN_ENV
    else:
        path = path or settings.token_file
        if path is None:
            raise UserError(f"no token: set {TOKEN_ENV} or pass --token-file PATH")
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"cannot read the token file {path}: {exc.strerror}") from None
        source = f"token file {path}"
    check_token_shape(token, source)
    return token


def check_token_shape(token: str, source: str = "the token") -> None:
    """Discord bot tokens are three dot-separated parts, the first the base64 of the bot's id."""
    if token.lower().startswith("bot "):
        raise UserError(f"{source}: give the bare token, without the 'Bot ' prefix")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise UserError(f"{source} is malformed: a bot token has three dot-separated parts")
    if bot_id_from_token(token) is None:
        raise UserError(f"{source} is malformed: its first part is not the bot's id in base64")
