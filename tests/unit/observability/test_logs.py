"""Log lines: logfmt and JSON carry the same fields, extras included; state changes are logged once."""

from __future__ import annotations

import json
import logging

import pytest

from analytics.observability.logs import JsonFormatter, LogfmtFormatter, StateLog, describe_error


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("analytics.test", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_json_lines_have_time_level_logger_message_and_extras() -> None:
    line = JsonFormatter().format(record("queue over its cap", request_id="abc"))
    fields = json.loads(line)
    assert fields["level"] == "warning"
    assert fields["logger"] == "analytics.test"
    assert fields["msg"] == "queue over its cap"
    assert fields["request_id"] == "abc"
    assert fields["time"].endswith("+00:00")


def test_logfmt_quotes_what_needs_quoting() -> None:
    line = LogfmtFormatter().format(record('said "hi"\nthen left', request_id="abc"))
    assert " level=warning logger=analytics.test " in line
    assert 'msg="said \\"hi\\"\\nthen left"' in line
    assert line.endswith("request_id=abc")
    assert "\n" not in line


def test_state_log_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    state = StateLog(logging.getLogger("analytics.test"), "redis unavailable", "redis available again")
    with caplog.at_level(logging.INFO, logger="analytics.test"):
        for _ in range(5):
            state.failed(ConnectionError("refused"))
        state.recovered()
        state.recovered()
    assert [entry.getMessage() for entry in caplog.records] == [
        "redis unavailable: ConnectionError: refused",
        "redis available again after 5 failed attempts",
    ]


def test_uvicorns_colour_codes_stay_out_of_log_lines() -> None:
    line = LogfmtFormatter().format(record("Started server process", color_message="\x1b[36mStarted\x1b[0m"))
    assert "color_message" not in line
    assert "\x1b" not in line


def test_a_failed_pipeline_command_is_named_without_its_arguments() -> None:
    """redis-py's message quotes every argument, which for a push are the events: never into a log or a 503 body."""
    failed = RuntimeError(
        "Command # 2 (RPUSH {a}:queue \x00secret\nrecord more) of pipeline caused error: CLUSTERDOWN down"
    )
    assert describe_error(failed) == "RuntimeError: Command # 2 (RPUSH …) of pipeline caused error: CLUSTERDOWN down"
    assert describe_error(ValueError("one\ntwo")) == "ValueError: one"
