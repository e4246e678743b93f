"""Injection attempts on the monitoring plane (issue 15 review; these held): caller text in a
JSON log line (a forged field, a second line, control/bidi characters, U+2028), in a Prometheus
label (a key label under ``metrics.key_labels``), and in an ``anomaly`` audit entry and its log
line (a requester name)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from coordinator.anomaly import AnomalyConfig
from coordinator.anomaly_hook import AnomalyMonitor
from mpcnet.common.jsonlog import JsonFormatter
from mpcnet.common.metrics import Metrics, key_label_value

HOSTILE = [
    '","level":"CRITICAL","forged":"1',
    "line one\n{\"ts\":\"x\",\"forged\":true}",
    "\r\x1b[2J\x1b]8;;http://evil/\x07click\x1b]8;;\x07",
    "a\u2028b\u2029c\u202egnp.exe\u200b\x00\x7f",
    "[bold red]x[/][link=http://evil]y[/link]",
    "e\u0301" * 40,
]
FIELDS = {"ts", "level", "component", "event", "message", "request_id", "session_id", "exception"}


def _line(text: str) -> str:
    rec = logging.LogRecord("coordinator.requests", logging.WARNING, __file__, 1, "request %s refused: %s", (text, text), None)
    rec.event = text
    rec.request_id = text
    rec.session_id = text.encode()
    rec.forged = text  # an extra the formatter does not know: never a field
    try:
        raise ValueError(text)
    except ValueError:
        import sys

        rec.exc_info = sys.exc_info()
    return JsonFormatter(text).format(rec)


@pytest.mark.parametrize("text", HOSTILE)
def test_caller_text_in_a_json_log_line_adds_no_field_no_line_and_no_raw_control(text: str) -> None:
    line = _line(text)
    assert "\n" not in line and "\r" not in line and line.isascii() and line.isprintable()
    doc = json.loads(line)
    assert set(doc) <= FIELDS and doc["level"] == "WARNING"
    for key in ("component", "event", "message", "request_id", "session_id"):
        assert doc[key].isprintable(), (key, doc[key])
    assert all(part.isprintable() for part in doc["exception"].split("\n"))


@pytest.mark.parametrize("text", HOSTILE)
def test_a_hostile_key_label_never_becomes_a_prometheus_label_value(text: str) -> None:
    m = Metrics("coordinator", key_labels=True)
    m.signature(text)
    m.drill_age({text: 1.0})
    assert key_label_value(text) == "other"
    page = m.render().decode()
    assert 'key="other"' in page and text not in page


class _Audit:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def append(self, actor: str, action: str, *, outcome: str = "", details: Any = None) -> None:
        self.entries.append({"actor": actor, "action": action, "details": dict(details or {})})


@pytest.mark.parametrize("text", HOSTILE)
def test_a_hostile_requester_name_in_an_anomaly_entry_and_its_log_line_is_escaped(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    audit = _Audit()
    t = [1_000_000]
    mon = AnomalyMonitor(AnomalyConfig(requester_min_count=1), audit, "coordinator", Metrics("coordinator"), clock=lambda: t[0])
    with caplog.at_level(logging.WARNING, logger="coordinator.anomaly"):
        for _ in range(3):
            t[0] += 1
            mon.request_created(text, b"\x09" * 32)
    [entry] = audit.entries
    subject = entry["details"]["subject"]
    assert subject.isprintable() and "\x00" not in subject
    [rec] = [r for r in caplog.records if r.name == "coordinator.anomaly"]
    assert rec.getMessage().isprintable()
    assert b"\x09" * 4 not in repr(entry).encode() and ("09" * 32) not in repr(entry)
