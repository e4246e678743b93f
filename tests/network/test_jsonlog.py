"""Structured logs (mpcnet.common.jsonlog): one JSON object per line, the documented fields,
caller text escaped (no raw control character, decoded or not), the config key and the servers'
``--log-format`` option."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from mpcnet.common import cliutil
from mpcnet.common.config import ConfigError, Fields, setup_logging
from mpcnet.common.jsonlog import JsonFormatter, load_log_format, rfc3339

_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("coordinator.requests", logging.WARNING, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_a_record_is_one_json_object_with_the_documented_fields() -> None:
    line = JsonFormatter("coordinator").format(_record("request %s: %s", "r-1", "done", event="sign-done", request_id="r-1"))
    doc = json.loads(line)
    assert set(doc) == {"ts", "level", "component", "event", "message", "request_id"}
    assert _TS.fullmatch(doc["ts"]) and doc["level"] == "WARNING" and doc["component"] == "coordinator"
    assert doc["event"] == "sign-done" and doc["message"] == "request r-1: done" and doc["request_id"] == "r-1"
    # without an explicit event: the logger's name; no request or session id unless passed
    doc = json.loads(JsonFormatter("node-1").format(_record("plain")))
    assert doc["event"] == "coordinator.requests" and "request_id" not in doc and "session_id" not in doc


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_700_000_000.9999) == "2023-11-14T22:13:20.999Z"


HOSTILE = "evil\n2026-01-01 fake line\x1b[31m\u202e\x00\x7f\u2028end"


def test_caller_text_is_escaped_and_no_raw_control_character_is_written() -> None:
    line = JsonFormatter("node-1").format(_record("label %s", HOSTILE, session_id=HOSTILE, request_id=b"\x01\x02"))
    assert line.isascii() and "\n" not in line and all(0x20 <= ord(c) < 0x7F for c in line)
    doc = json.loads(line)
    for value in (doc["message"], doc["session_id"]):
        # decoded, still one printable line: the text format's escaping (governance.text.escape)
        assert value.isprintable() and "\\n" in value and "\\x1b" in value and "\\u202e" in value
    assert doc["request_id"] == "0102"  # bytes: hex, never raw


def test_a_traceback_is_one_escaped_field() -> None:
    try:
        raise ValueError("bad \x1b[2J value")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "crashed", (), sys.exc_info())
    line = JsonFormatter("coordinator").format(rec)
    assert "\n" not in line and line.isascii()
    exc = json.loads(line)["exception"]
    assert "ValueError: bad \\x1b[2J value" in exc and "\x1b" not in exc


def test_the_config_key_accepts_text_or_json_only() -> None:
    assert load_log_format(Fields({}, "cfg.json")) == "text"
    assert load_log_format(Fields({"log_format": "json"}, "cfg.json")) == "json"
    for bad in ("JSON", "xml", 1, ""):
        with pytest.raises(ConfigError, match=r"^cfg\.json: log_format: must be (one of text, json|a string)"):
            load_log_format(Fields({"log_format": bad}, "cfg.json"))


def test_setup_logging_writes_json_lines(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "c.log"
    try:
        setup_logging(log_file, "coordinator", "INFO", "json")
        logging.getLogger("coordinator.service").info("request %s failed", "r\n2", extra={"event": "request-failed", "request_id": "r-2"})
        logging.getLogger("coordinator.service").debug("not at INFO")
    finally:
        for h in logging.getLogger().handlers:
            h.close()
        logging.getLogger().handlers.clear()
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["event"] == "request-failed" and doc["request_id"] == "r-2" and doc["message"] == "request r\\n2 failed"


def test_a_text_log_escapes_and_indents_a_tracebacks_caller_text(tmp_path: Path) -> None:
    """p14e: the text format escaped the message but appended a traceback raw, so an exception
    whose message quoted a caller's text (a newline forging a record, ANSI, a bidi override)
    reached the log file unescaped. Now every traceback and stack line is escaped and indented."""
    log_file = tmp_path / "n.log"
    forged = "2026-01-01 00:00:00,000 node-1 INFO mpc_node.service: share released"
    try:
        setup_logging(log_file, "node-1", "INFO", "text")
        try:
            raise ValueError(f"bad label x\x1b[2J\u202eexe.txt\n{forged}")
        except ValueError:
            logging.getLogger("mpc_node.service").exception("unexpected %s", "a\x1bb", stack_info=True)
    finally:
        for h in logging.getLogger().handlers:
            h.close()
        logging.getLogger().handlers.clear()
    text = log_file.read_text()
    assert "\x1b" not in text and "\u202e" not in text, text
    lines = text.splitlines()
    assert lines[0].endswith("mpc_node.service: unexpected a\\x1bb"), lines[0]
    assert all(line.startswith("  | ") for line in lines[1:]) and len(lines) > 3, lines
    assert any("Traceback (most recent call last):" in line for line in lines)
    assert not any(line.startswith(forged) for line in lines)
    assert any(line == "  | " + forged for line in lines), lines  # its own line, marked as part of the traceback


@dataclass(frozen=True)
class _Cfg:
    name: str
    log_file: Path
    log_level: str = "INFO"
    log_format: str = "text"


@pytest.mark.parametrize(("configured", "option", "json_lines"), [
    ("text", [], False), ("json", [], True), ("text", ["--log-format", "json"], True), ("json", ["--log-format", "text"], False),
])
def test_the_servers_log_format_option_overrides_the_config(
    tmp_path: Path, configured: str, option: list[str], json_lines: bool
) -> None:
    log_file = tmp_path / "srv.log"

    def serve(cfg: _Cfg, serving: object) -> int:
        logging.getLogger("srv").info("serving")
        return 0

    cmd = cliutil.server_command(
        "srv", "a server", "srv", lambda p: _Cfg("srv", log_file, log_format=configured), serve, (OSError,), logging.getLogger("srv")
    )
    try:
        assert cliutil.run(cmd, ["--config", str(tmp_path / "c.json"), *option], "srv") == 0
    finally:
        for h in logging.getLogger().handlers:
            h.close()
        logging.getLogger().handlers.clear()
    line = log_file.read_text().splitlines()[0]
    if json_lines:
        assert json.loads(line)["message"] == "serving"
    else:
        assert line.endswith(" srv INFO srv: serving")


def test_a_bad_log_format_option_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cmd = cliutil.server_command(
        "srv", "a server", "srv", lambda p: _Cfg("srv", tmp_path / "x.log"), lambda c, s: 0, (), logging.getLogger("srv")
    )
    assert cliutil.run(cmd, ["--config", "c.json", "--log-format", "yaml\x1b"], "srv") == 2
    err = capsys.readouterr().err
    assert "--log-format" in err and "must be one of text, json" in err and "\x1b" not in err
