"""Structured logs: one JSON object per line (``log_format: "json"``, ``--log-format json``).

Each line is a JSON object (ASCII only: every non-ASCII and control character is a ``\\uXXXX``
escape, so no raw control character ever reaches the file or the terminal) with the fields:

* ``ts``: the record's time, RFC 3339 in UTC with milliseconds (``2026-11-30T08:56:18.123Z``);
* ``level``: ``DEBUG`` | ``INFO`` | ``WARNING`` | ``ERROR`` | ``CRITICAL``;
* ``component``: the process's name (``coordinator``, ``node-1``: the config's ``name``);
* ``event``: ``extra={"event": ...}`` when the log call names one, else the logger's name;
* ``message``: the formatted message, caller text escaped (:func:`governance.text.escape`, as in
  the text format, so a decoded line still holds no control, format or bidi character);
* ``request_id`` / ``session_id``: when the log call passes them (``extra=``), escaped;
* ``exception``: the traceback, when the record has one (lines escaped).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from governance.text import escape, quote
from mpcnet.common.config import Fields

LOG_FORMATS = ("text", "json")
"""The accepted values of the config's ``log_format`` and the servers' ``--log-format``."""

_EXTRAS = ("request_id", "session_id")


def rfc3339(created: float) -> str:
    """``created`` (seconds since the epoch) as RFC 3339 UTC with milliseconds: ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    whole = int(created)
    ms = min(999, int((created - whole) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def _field(value: object) -> str:
    if isinstance(value, bytes):  # an id passed as bytes: hex, never raw
        return value.hex()
    return escape(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring); ``component`` is fixed per process."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname,
            "component": escape(self.component),
            "event": _field(getattr(record, "event", None) or record.name),
            "message": escape(record.getMessage()),
        }
        for key in _EXTRAS:
            value = getattr(record, key, None)
            if value is not None and value != "":
                doc[key] = _field(value)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exception"] = "\n".join(escape(line) for line in record.exc_text.splitlines())
        if record.stack_info:
            doc["stack"] = "\n".join(escape(line) for line in record.stack_info.splitlines())
        return json.dumps(doc, ensure_ascii=True, separators=(",", ":"))


def load_log_format(f: Fields) -> str:
    """The config's optional ``log_format`` (default ``"text"``); ConfigError naming the field."""
    value = f.text("log_format", "text")
    if value not in LOG_FORMATS:
        raise f.error("log_format", f"must be one of {', '.join(LOG_FORMATS)}, got {quote(value)}")
    return value
