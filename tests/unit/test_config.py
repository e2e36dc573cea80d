"""Settings parsing: defaults, precedence, and one clear line for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.config import ENVIRONMENT, ConfigError, Durability, Role, Settings, load_settings
from analytics.dev.embedded import VALKEY, Access
from analytics.service import backend


def test_defaults_match_the_contract() -> None:
    settings = load_settings({}, env_file=None)
    assert settings == Settings()
    assert (settings.host, settings.port, settings.database_url, settings.redis_url) == ("127.0.0.1", 3000, None, None)
    assert settings.data_dir == Path(".analytics")
    assert settings.flush_interval_ms == 100
    assert settings.max_body_bytes == 1024 * 1024


def test_environment_values_are_parsed() -> None:
    settings = load_settings(
        {
            "PORT": "8080",
            "DATABASE_URL": "postgresql://u:p@db:5432/analytics",
            "REDIS_URL": "redis://redis:6379/0",
            "ANALYTICS_ROLE": "writer",
            "ANALYTICS_MIGRATE": "no",
            "ANALYTICS_BATCH_SIZE": "2000",
        },
        env_file=None,
    )
    assert settings.port == 8080
    assert settings.database_url == "postgresql://u:p@db:5432/analytics"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.role is Role.WRITER
    assert settings.migrate is False
    assert settings.batch_size == 2000


def test_durability_is_async_unless_asked() -> None:
    assert load_settings({}, env_file=None).durability is Durability.ASYNC
    assert load_settings({"ANALYTICS_DURABILITY": " Replica "}, env_file=None).durability is Durability.REPLICA
    assert load_settings({"ANALYTICS_DURABILITY": "fsync"}, env_file=None).durability is Durability.FSYNC


def test_workers_are_one_unless_asked() -> None:
    assert load_settings({}, env_file=None).workers == 1
    assert load_settings({"ANALYTICS_WORKERS": " 4 "}, env_file=None).workers == 4


def test_access_settings_are_parsed() -> None:
    settings = load_settings(
        {
            "ANALYTICS_CORS_ORIGINS": "https://a.example, http://localhost:8080",
            "ANALYTICS_STATS_CORS_ORIGINS": "",
            "ANALYTICS_API_TOKENS": "tok-one,tok-two, ,",
            "ANALYTICS_SITES": "site-a",
            "ANALYTICS_RATE_LIMIT_IP": "2.5",
            "ANALYTICS_TRUSTED_PROXY_HEADER": "X-Forwarded-For",
        },
        env_file=None,
    )
    assert settings.cors_origins == ("https://a.example", "http://localhost:8080")
    assert settings.stats_cors_origins == ()
    assert settings.api_tokens == ("tok-one", "tok-two")
    assert settings.sites == ("site-a",)
    assert settings.rate_limit_ip == 2.5
    assert settings.trusted_proxy_header == "x-forwarded-for"
    assert "tok-one" not in repr(settings)


def test_stats_read_the_database_unless_a_replica_is_set() -> None:
    assert load_settings({"DATABASE_URL": "postgresql://db/analytics"}, env_file=None).stats_database_url is None
    assert load_settings({"STATS_DATABASE_URL": " "}, env_file=None).stats_database_url is None
    replica = load_settings({"STATS_DATABASE_URL": " postgres://stats@replica:5433/analytics "}, env_file=None)
    assert replica.stats_database_url == "postgres://stats@replica:5433/analytics"
    assert replica.database_url is None


def test_empty_urls_mean_embedded_servers() -> None:
    settings = load_settings({"DATABASE_URL": "", "REDIS_URL": " "}, env_file=None)
    assert settings.database_url is None
    assert settings.redis_url is None


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('# comment\nPORT=4000\nHOST="0.0.0.0"\nexport LOG_LEVEL=debug\n')
    settings = load_settings({"PORT": "5000"}, env_file=env_file)
    assert (settings.port, settings.host, settings.log_level) == (5000, "0.0.0.0", "debug")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "abc", "PORT: expected a whole number, got 'abc'"),
        ("PORT", "70000", "PORT: expected a number from 0 to 65535, got 70000"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL: expected a URL starting with postgresql:// or postgres://"),
        ("DATABASE_URL", "postgresql://h:notaport/db", "DATABASE_URL: not a valid URL"),
        ("STATS_DATABASE_URL", "redis://x/0", "STATS_DATABASE_URL: expected a URL starting with postgresql://"),
        ("STATS_DATABASE_URL", "postgresql://h:port/db", "STATS_DATABASE_URL: not a valid URL"),
        ("REDIS_URL", "http://x", "REDIS_URL: expected a URL starting with redis://"),
        ("ANALYTICS_ROLE", "both", "ANALYTICS_ROLE: expected one of api, writer, all, got 'both'"),
        ("ANALYTICS_MIGRATE", "maybe", "ANALYTICS_MIGRATE: expected true or false"),
        ("ANALYTICS_BATCH_SIZE", "0", "ANALYTICS_BATCH_SIZE: expected a number from 1"),
        ("ANALYTICS_REDIS_PREFIX", "{x}", "ANALYTICS_REDIS_PREFIX: must not contain braces"),
        ("ANALYTICS_WORKERS", "0", "ANALYTICS_WORKERS: expected a number from 1 to 64, got 0"),
        ("ANALYTICS_WORKERS", "two", "ANALYTICS_WORKERS: expected a whole number, got 'two'"),
        ("ANALYTICS_DURABILITY", "sync", "ANALYTICS_DURABILITY: expected one of async, replica, fsync, got 'sync'"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL: expected one of debug, info, warning, error"),
        ("ANALYTICS_CORS_ORIGINS", "shop.example", "ANALYTICS_CORS_ORIGINS: expected * or origins such as"),
        ("ANALYTICS_STATS_CORS_ORIGINS", "https://a.example/", "ANALYTICS_STATS_CORS_ORIGINS: expected * or origins"),
        ("ANALYTICS_RATE_LIMIT_IP", "fast", "ANALYTICS_RATE_LIMIT_IP: expected a number, got 'fast'"),
        ("ANALYTICS_RATE_LIMIT_SITE", "-1", "ANALYTICS_RATE_LIMIT_SITE: expected a number from 0 to"),
        ("ANALYTICS_TRUSTED_PROXY_HEADER", "X Forwarded", "ANALYTICS_TRUSTED_PROXY_HEADER: expected an HTTP header"),
        ("ANALYTICS_HEADER_TIMEOUT_S", "0", "ANALYTICS_HEADER_TIMEOUT_S: expected a number from 0.1 to 3600"),
    ],
)
def test_bad_values_are_one_clear_line(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value}, env_file=None)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_every_setting_has_one_environment_variable() -> None:
    names = [var.name for var in ENVIRONMENT]
    assert len(names) == len(set(names))
    assert {var.field for var in ENVIRONMENT} == set(Settings.__dataclass_fields__)


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line}
    assert {var.name for var in ENVIRONMENT} <= documented


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert [var.name for var in ENVIRONMENT if f"`{var.name}`" not in readme] == []


def test_an_env_file_line_that_cannot_be_parsed_is_a_bad_value(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('PORT=3001\nANALYTICS_API_TOKENS="s3cret\nLOG_LEVEL=debug\n')
    with pytest.raises(ConfigError) as raised:
        load_settings({}, env_file=env_file)
    message = str(raised.value)
    assert "line 2" in message
    assert "ANALYTICS_API_TOKENS" in message
    assert "s3cret" not in message, "the value may be a secret: only the name is quoted"
    assert "\n" not in message


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1", "::", "::1", "localhost", "api.internal", "my-host"])
def test_host_accepts_addresses_and_names(host: str) -> None:
    assert load_settings({"HOST": host}, env_file=None).host == host


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3", "bad host", "-leading.example", "a..b", "http://x", "x" * 64])
def test_host_refuses_what_cannot_be_bound(host: str) -> None:
    with pytest.raises(ConfigError, match="HOST: expected an IP address or a host name"):
        load_settings({"HOST": host}, env_file=None)


def test_a_redis_cluster_is_asked_for_and_needs_a_url_naming_a_node() -> None:
    assert load_settings({}, env_file=None).redis_cluster is False
    assert load_settings({"ANALYTICS_REDIS_CLUSTER": "true"}, env_file=None).redis_cluster is True
    clustered = load_settings({"ANALYTICS_REDIS_CLUSTER": "true"}, env_file=None)
    with (
        pytest.raises(ConfigError, match="ANALYTICS_REDIS_CLUSTER needs REDIS_URL"),
        backend(clustered, VALKEY, Access.EXCLUSIVE),
    ):
        pass
