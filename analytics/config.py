"""Settings: read once from the environment (and an optional `.env`), validated, then passed around frozen."""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from analytics.errors import AnalyticsError

T = TypeVar("T")


class ConfigError(AnalyticsError, ValueError):
    """A setting that cannot be used; its message is one line meant for a human."""


class Role(enum.StrEnum):
    API = "api"
    WRITER = "writer"
    ALL = "all"

    @property
    def runs_api(self) -> bool:
        return self in (Role.API, Role.ALL)

    @property
    def runs_writer(self) -> bool:
        return self in (Role.WRITER, Role.ALL)


class Durability(enum.StrEnum):
    """What a 202 waits for besides Redis's own acknowledgement of the push."""

    ASYNC = "async"  # nothing more: a failover or a host crash can lose the last acknowledged pushes
    REPLICA = "replica"  # a replica acknowledged the push (WAIT): it survives a failover to that replica
    FSYNC = "fsync"  # the primary's append-only file holds it on disk (WAITAOF): it survives a host crash


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 3000
    database_url: str | None = None
    stats_database_url: str | None = None
    redis_url: str | None = None
    redis_cluster: bool = False
    data_dir: Path = Path(".analytics")
    role: Role = Role.ALL
    workers: int = 1
    migrate: bool = True
    redis_prefix: str = "analytics"
    queue_shards: int = 1
    batch_size: int = 5000
    writer_concurrency: int = 2
    flush_interval_ms: int = 100
    max_body_bytes: int = 1024 * 1024
    max_batch_events: int = 1000
    queue_max_length: int = 2_000_000
    durability: Durability = Durability.ASYNC
    heartbeat_ttl_s: int = 10
    retention_days: int = 0
    db_pool_size: int = 10
    log_level: str = "info"
    log_format: str = "logfmt"
    cors_origins: tuple[str, ...] = ("*",)
    stats_cors_origins: tuple[str, ...] = ()
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    sites: tuple[str, ...] = ()
    rate_limit_ip: float = 0.0
    rate_limit_ip_burst: int = 100
    rate_limit_site: float = 0.0
    rate_limit_site_burst: int = 10_000
    trusted_proxy_header: str | None = None
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 32 * 1024
    country_header: str | None = None
    geoip_database: str = "bundled"

    @property
    def flush_interval_s(self) -> float:
        return self.flush_interval_ms / 1000


@dataclass(frozen=True, slots=True)
class _Var:
    """One environment variable: its name, the field it fills and how its text is parsed."""

    name: str
    field: str
    parse: Callable[[str], Any]
    help: str


def _integer(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise ValueError(f"expected a number from {minimum} to {maximum}, got {value}")
        return value

    return parse


def _number(minimum: float, maximum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise ValueError(f"expected a number from {minimum:g} to {maximum:g}, got {value:g}")
        return value

    return parse


def _list(text: str) -> tuple[str, ...]:
    """A comma-separated list; blanks dropped, so an empty value is the empty list."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _origins(text: str) -> tuple[str, ...]:
    origins = _list(text)
    for origin in origins:
        if origin != "*" and (not origin.startswith(("http://", "https://")) or origin.endswith("/")):
            raise ValueError(f"expected * or origins such as https://example.com, got {origin!r}")
    return origins


def _header_name(text: str) -> str | None:
    name = text.strip().lower()
    if name and not re.fullmatch(r"[a-z0-9-]+", name):
        raise ValueError(f"expected an HTTP header name such as X-Forwarded-For, got {text!r}")
    return name or None


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _optional_url(schemes: tuple[str, ...]) -> Callable[[str], str | None]:
    def parse(text: str) -> str | None:
        url = text.strip()
        if not url:
            return None
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as error:
            raise ValueError(f"not a valid URL ({error})") from None
        if parts.scheme not in schemes:
            raise ValueError(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}, got {url!r}")
        return url

    return parse


def _choice(options: tuple[str, ...], convert: Callable[[str], T]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return convert(value)

    return parse


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


_HOSTNAME_LABEL: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)


def _host(text: str) -> str:
    """An IP address or a DNS name (RFC 1123); a dotted run of numbers must be a real IPv4 address."""
    host = _non_empty(text)
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host.strip("[]")))
    labels = host.rstrip(".").split(".")
    is_name = len(host) <= 253 and all(_HOSTNAME_LABEL.fullmatch(label) for label in labels)
    if not is_name or all(label.isdigit() for label in labels):
        raise ValueError(f"expected an IP address or a host name such as 0.0.0.0 or localhost, got {text!r}")
    return host


def _redis_prefix(text: str) -> str:
    prefix = _non_empty(text)
    if any(char in prefix for char in "{}"):
        raise ValueError("must not contain braces: it becomes the hash tag {<prefix>}")
    if re.search(r":[0-9]+\Z", prefix):
        raise ValueError("must not end in :<number>: {<prefix>:<n>} is the hash tag of queue shard n")
    return prefix


def _geoip_database(text: str) -> str:
    """`bundled`, `none`, or the path of a MaxMind `.mmdb` file that exists."""
    value = _non_empty(text)
    if value.lower() in ("bundled", "none"):
        return value.lower()
    if not Path(value).is_file():
        raise ValueError(f"expected bundled, none or the path of a .mmdb file, got {value!r} (no such file)")
    return value


LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("logfmt", "json")

ENVIRONMENT: Final[tuple[_Var, ...]] = (
    _Var("HOST", "host", _host, "address the HTTP server binds"),
    _Var("PORT", "port", _integer(0, 65535), "port the HTTP server listens on"),
    _Var(
        "DATABASE_URL",
        "database_url",
        _optional_url(("postgresql", "postgres")),
        "PostgreSQL URL; unset starts an embedded PostgreSQL under ANALYTICS_DATA_DIR",
    ),
    _Var(
        "STATS_DATABASE_URL",
        "stats_database_url",
        _optional_url(("postgresql", "postgres")),
        "PostgreSQL with a logical replica of the rollups, for v1 stats and the site list; unset: DATABASE_URL",
    ),
    _Var(
        "REDIS_URL",
        "redis_url",
        _optional_url(("redis", "rediss", "unix")),
        "Redis/Valkey URL; unset starts an embedded Valkey under ANALYTICS_DATA_DIR",
    ),
    _Var(
        "ANALYTICS_REDIS_CLUSTER",
        "redis_cluster",
        _boolean,
        "REDIS_URL names a node of a Redis/Valkey Cluster: keys go to the nodes that own their slots",
    ),
    _Var("ANALYTICS_DATA_DIR", "data_dir", lambda text: Path(_non_empty(text)), "where embedded servers keep data"),
    _Var("ANALYTICS_ROLE", "role", _choice(tuple(Role), Role), "what `serve` runs: api, writer or all"),
    _Var(
        "ANALYTICS_WORKERS",
        "workers",
        _integer(1, 64),
        "api processes serving the one port (role api only), each with its own connections",
    ),
    _Var("ANALYTICS_MIGRATE", "migrate", _boolean, "apply migrations before `serve` starts"),
    _Var("ANALYTICS_REDIS_PREFIX", "redis_prefix", _redis_prefix, "Redis keys are {<prefix>}:queue and so on"),
    _Var(
        "ANALYTICS_QUEUE_SHARDS",
        "queue_shards",
        _integer(1, 1024),
        "queue shards, each its own hash tag ({<prefix>} for shard 0, {<prefix>:<n>} after); the api spreads pushes "
        "over them and writer lanes take turns on them",
    ),
    _Var("ANALYTICS_BATCH_SIZE", "batch_size", _integer(1, 100_000), "most events the writer commits at once"),
    _Var(
        "ANALYTICS_WRITER_CONCURRENCY",
        "writer_concurrency",
        _integer(1, 64),
        "writer lanes of one process: batches claimed in parallel, each split by site over as many connections",
    ),
    _Var(
        "ANALYTICS_FLUSH_INTERVAL_MS",
        "flush_interval_ms",
        _integer(0, 60_000),
        "longest a queued event waits for its batch to fill",
    ),
    _Var("ANALYTICS_MAX_BODY_BYTES", "max_body_bytes", _integer(1, 1 << 30), "largest request body accepted"),
    _Var(
        "ANALYTICS_MAX_BATCH_EVENTS",
        "max_batch_events",
        _integer(1, 100_000),
        "most events one POST /api/ingestion/events may carry",
    ),
    _Var(
        "ANALYTICS_QUEUE_MAX_LENGTH",
        "queue_max_length",
        _integer(1, 1 << 40),
        "queued events past which ingestion answers 503",
    ),
    _Var(
        "ANALYTICS_DURABILITY",
        "durability",
        _choice(tuple(Durability), Durability),
        "what a 202 waits for: async (Redis acknowledged), replica (a replica has it) or fsync (on the primary's disk)",
    ),
    _Var(
        "ANALYTICS_HEARTBEAT_TTL_S",
        "heartbeat_ttl_s",
        _integer(2, 3600),
        "a silent writer's batch is re-queued after this",
    ),
    _Var(
        "ANALYTICS_RETENTION_DAYS",
        "retention_days",
        _integer(0, 36_600),
        "days of raw events kept (whole months are dropped once past it; rollups stay); 0 keeps them forever",
    ),
    _Var("ANALYTICS_DB_POOL_SIZE", "db_pool_size", _integer(1, 1000), "PostgreSQL connections for stats per process"),
    _Var("LOG_LEVEL", "log_level", _choice(LOG_LEVELS, str), "debug, info, warning or error"),
    _Var("LOG_FORMAT", "log_format", _choice(LOG_FORMATS, str), "logfmt (key=value lines) or json (JSON lines)"),
    _Var(
        "ANALYTICS_CORS_ORIGINS",
        "cors_origins",
        _origins,
        "origins browsers may send events from: * for any, a comma-separated list, or empty for none",
    ),
    _Var(
        "ANALYTICS_STATS_CORS_ORIGINS",
        "stats_cors_origins",
        _origins,
        "origins browsers may read stats from: * for any, a comma-separated list, or empty for none",
    ),
    _Var(
        "ANALYTICS_API_TOKENS",
        "api_tokens",
        _list,
        "comma-separated bearer tokens, one required by the stats API; empty leaves stats open",
    ),
    _Var("ANALYTICS_SITES", "sites", _list, "comma-separated site ids ingestion accepts; empty accepts any"),
    _Var(
        "ANALYTICS_RATE_LIMIT_IP",
        "rate_limit_ip",
        _number(0, 1e9),
        "ingestion requests per second per client IP, per api process; 0 turns it off",
    ),
    _Var("ANALYTICS_RATE_LIMIT_IP_BURST", "rate_limit_ip_burst", _integer(1, 1 << 30), "requests a client may burst"),
    _Var(
        "ANALYTICS_RATE_LIMIT_SITE",
        "rate_limit_site",
        _number(0, 1e9),
        "events per second per site_id, per api process; 0 turns it off",
    ),
    _Var(
        "ANALYTICS_RATE_LIMIT_SITE_BURST",
        "rate_limit_site_burst",
        _integer(1, 1 << 30),
        "events a site may burst (at least ANALYTICS_MAX_BATCH_EVENTS, or big batches never pass)",
    ),
    _Var(
        "ANALYTICS_TRUSTED_PROXY_HEADER",
        "trusted_proxy_header",
        _header_name,
        "header your proxy sets to the client IP (X-Forwarded-For: its last entry); empty trusts no header",
    ),
    _Var(
        "ANALYTICS_HEADER_TIMEOUT_S",
        "header_timeout_s",
        _number(0.1, 3600),
        "longest a client may take to send a request's headers",
    ),
    _Var(
        "ANALYTICS_BODY_TIMEOUT_S",
        "body_timeout_s",
        _number(0.1, 3600),
        "longest a client may take to send a request's body",
    ),
    _Var(
        "ANALYTICS_MAX_HEADER_BYTES",
        "max_header_bytes",
        _integer(1024, 1 << 24),
        "largest request line plus headers accepted (431 past it)",
    ),
    _Var(
        "ANALYTICS_COUNTRY_HEADER",
        "country_header",
        _header_name,
        "header your CDN sets to the client's country (CF-IPCountry); empty looks the address up instead",
    ),
    _Var(
        "ANALYTICS_GEOIP_DATABASE",
        "geoip_database",
        _geoip_database,
        "country database: bundled (GeoLite2 data shipped by geoip2fast), none, or the path of a MaxMind .mmdb",
    ),
)

DEFAULTS: Final = Settings()


def describe(field: str) -> str:
    """The `--help` text of a CLI flag: what it does, its environment twin and its default."""
    var = next(var for var in ENVIRONMENT if var.field == field)
    default = getattr(DEFAULTS, field)
    return f"{var.help} (env {var.name}; default: {default})"


def _check_env_file(env_file: Path) -> None:
    """A line python-dotenv cannot parse is skipped with a mere warning: here it is a bad value, like any other.

    Only the line's name is quoted: the rest may be a secret.
    """
    with env_file.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.error:
                statement = binding.original.string.strip()
                name = statement.split("=", 1)[0].strip() if "=" in statement else statement[:40]
                raise ConfigError(
                    f"{env_file}: line {binding.original.line} cannot be parsed (an unclosed quote?): {name}=…"
                )


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> Settings:
    """Merge defaults < `.env` < environment (CLI flags arrive as environment), validating each value once."""
    environ = os.environ if environ is None else environ
    from_file: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        _check_env_file(env_file)
        from_file = {key: value for key, value in dotenv_values(env_file).items() if value is not None}
    values: dict[str, Any] = {}
    for var in ENVIRONMENT:
        text = environ.get(var.name, from_file.get(var.name))
        if text is None:
            continue
        try:
            values[var.field] = var.parse(text)
        except ValueError as error:
            raise ConfigError(f"{var.name}: {error}") from None
    return Settings(**values)
