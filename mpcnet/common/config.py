"""Strict JSON configuration helpers: every error names the file and the field.

Also the ``governance`` section (admin set and initial policy) that the node and the coordinator
configs share (:func:`load_governance`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

from governance.errors import GovernanceError
from governance.policy import DEFAULT_SCOPE, AdminSet, SignedPolicyChange
from governance.roster import Roster, SignedRosterChange, verify_roster_history
from governance.text import check_name, escape, quote
from mpcnet.common.fsutil import read_small_file

_HOSTPORT = re.compile(r"[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}")  # [0-9], not \d (which takes any script's digits)


# the longest duration a config may give (a year): Event.wait, time.sleep and gRPC deadlines overflow past ~9.2e9 s
MAX_SECONDS = 366 * 86400.0


class ConfigError(Exception):
    """A configuration file is missing, not JSON, or has a missing or invalid field."""


class Fields:
    """Typed access to one JSON object; errors read ``FILE: a.b.c: reason``."""

    def __init__(self, doc: Any, where: str, prefix: str = "", base: Path | None = None) -> None:
        if not isinstance(doc, dict):
            raise ConfigError(f"{where}: {prefix or 'document'}: must be a JSON object")
        self.doc = doc
        self.where = where
        self.prefix = prefix
        self.base = base

    def _name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.where}: {self._name(key)}: {reason}")

    def _get(self, key: str, default: Any, required: bool) -> Any:
        if key not in self.doc or self.doc[key] is None:
            if required:
                raise self.error(key, "missing")
            return default
        return self.doc[key]

    def text(self, key: str, default: str | None = None) -> str:
        """The string at ``key``, or ``default`` when it is absent (required when ``default`` is None)."""
        v = self._get(key, default, default is None)
        if not isinstance(v, str):
            raise self.error(key, "must be a string")
        return v

    def name(self, key: str, default: str | None = None) -> str:
        """A name (a component's, a node's): :data:`governance.text.NAME_RE`, the alphabet the audit
        trail, the RPCs and certificates use for it."""
        v = self.text(key, default)
        try:
            return check_name(v, key)
        except GovernanceError as e:
            raise self.error(key, e.reason) from None

    def opt_str(self, key: str) -> str | None:
        v = self._get(key, None, False)
        if v is not None and not isinstance(v, str):
            raise self.error(key, "must be a string")
        return v

    def integer(self, key: str, default: int | None = None, *, lo: int | None = None, hi: int | None = None) -> int:
        v = self._get(key, default, default is None)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.error(key, "must be an integer")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.error(key, f"must be in {lo}..{hi}")
        return v

    def number(self, key: str, default: float | None = None, *, lo: float = 0.0, hi: float = MAX_SECONDS) -> float:
        """A duration in seconds: a finite number > ``lo`` and at most ``hi`` (default
        :data:`MAX_SECONDS`); ConfigError naming ``key``."""
        v = self._get(key, default, default is None)
        # json reads NaN, Infinity and 1e999 (Infinity): none is a duration (time.sleep, Event.wait refuse them)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= lo:
            raise self.error(key, f"must be a finite number > {lo}")
        if v > hi:  # 1e308 is finite, yet Event.wait raises OverflowError and a gRPC deadline expires at once
            raise self.error(key, f"must be at most {hi:g} seconds")
        return float(v)

    def flag(self, key: str, default: bool = False) -> bool:
        v = self._get(key, default, False)
        if not isinstance(v, bool):
            raise self.error(key, "must be true or false")
        return v

    def path(self, key: str, *, required: bool = True) -> Path | None:
        """The file named by ``key`` (``~`` expanded; relative to the config's directory), None
        if absent and not ``required``. ConfigError naming ``key``: missing, not a string, empty,
        holding a NUL or not encodable as a file name (before, the first use of such a path was
        an internal error)."""
        v = self.opt_str(key)
        if v is None:
            if required:
                raise self.error(key, "missing")
            return None
        if not v:
            raise self.error(key, "must be a path, not empty")
        if "\0" in v:
            raise self.error(key, "must not contain a NUL character")
        try:
            os.fsencode(v)  # a lone surrogate cannot name a file: refused here, not as an internal error on first use
        except UnicodeError:
            raise self.error(key, "is not encodable as a file name") from None
        p = Path(v).expanduser()
        if not p.is_absolute() and self.base is not None:
            p = self.base / p
        return p

    def req_path(self, key: str) -> Path:
        p = self.path(key)
        assert p is not None
        return p

    def hex(self, key: str, length: int) -> bytes:
        v = self.text(key)
        try:
            b = bytes.fromhex(v)
        except ValueError:
            raise self.error(key, "must be hex") from None
        if len(b) != length:
            raise self.error(key, f"must be {length} bytes of hex, got {len(b)}")
        return b

    def endpoint(self, key: str) -> str:
        v = self.text(key)
        if not _HOSTPORT.fullmatch(v):
            raise self.error(key, f"must be HOST:PORT, got {quote(v)}")
        return v

    def obj(self, key: str) -> Fields:
        return Fields(self._get(key, None, True), self.where, self._name(key), self.base)

    def list(self, key: str) -> list[Fields]:
        v = self._get(key, None, True)
        if not isinstance(v, list) or not v:
            raise self.error(key, "must be a non-empty list")
        return [Fields(item, self.where, f"{self._name(key)}[{i}]", self.base) for i, item in enumerate(v)]

    def extra_keys(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.doc) - allowed)
        if unknown:
            raise ConfigError(f"{self.where}: {self.prefix + '.' if self.prefix else ''}{unknown[0]}: unknown field")


# what marks each kind of JSON file an operator may give where a config is expected: a key only
# that kind has (and always has); used to say "this is a coordinator config" rather than
# "db: unknown field" when a config of the wrong kind is given (:func:`load_json`)
CONFIG_KINDS: dict[str, str] = {
    "node config": "index",  # mpc_node/config.py (required there, never in a coordinator config)
    "coordinator config": "nodes",  # coordinator/config.py (required there, never in a node config)
    "keystore": "identity_public",  # mpcnet/common/keystore.py
}


def load_json(path: Path, what: str) -> Fields:
    """The JSON object in ``path``, a ``what`` (e.g. ``node config``). ConfigError, one line naming
    the file (escaped) and what is wrong: it cannot be read (missing, a directory, no
    permission), is not UTF-8, not JSON, not a JSON object, or is a file of another kind of
    :data:`CONFIG_KINDS` (a coordinator config given to a node, a keystore ...)."""
    path = Path(path)
    where = escape(path)
    try:
        raw = read_small_file(path)  # a FIFO, a device or a huge file: refused, never waited on or read whole
    except OSError as e:
        raise ConfigError(f"{what} {where}: cannot read ({e.strerror or type(e).__name__})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{what} {where}: not valid JSON ({escape(e)})") from None
    except RecursionError:
        raise ConfigError(f"{what} {where}: not valid JSON (nested too deeply)") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{what} {where}: must be a JSON object, not {type(doc).__name__ if doc is not None else 'null'}")
    mine = CONFIG_KINDS.get(what)
    if mine is not None and mine not in doc:
        for kind, marker in CONFIG_KINDS.items():
            if kind != what and marker in doc:
                raise ConfigError(f"{what} {where}: is a {kind} (it has {marker!r}), not a {what}")
    return Fields(doc, where, base=path.parent)


def load_governance(f: Fields) -> tuple[AdminSet, SignedPolicyChange]:
    """The ``governance`` object: admin set and the admin-signed initial default policy.

    Only the shapes are checked here; the node verifies the initial policy's signatures against
    the admin set when it starts (and refuses to start if they do not verify).
    """
    g = f.obj("governance")
    g.extra_keys({"admin_set", "initial_policy", "roster_history"})
    try:
        admins = AdminSet.from_dict(g.doc.get("admin_set"))
    except GovernanceError as e:
        raise g.error(f"admin_set.{e.field}" if e.field else "admin_set", e.reason) from None
    try:
        initial = SignedPolicyChange.from_dict(g.doc.get("initial_policy"))
    except GovernanceError as e:
        raise g.error(f"initial_policy.{e.field}" if e.field else "initial_policy", e.reason) from None
    if initial.change.scope != DEFAULT_SCOPE:
        raise g.error("initial_policy.change.scope", "must be 'default'")
    return admins, initial


def load_roster_history(f: Fields, admins: AdminSet) -> tuple[tuple[SignedRosterChange, ...], Roster | None]:
    """The optional ``governance.roster_history``: a list of admin-signed roster changes
    (:meth:`SignedRosterChange.to_dict`, version 1 first), verified as one chain against
    ``admins`` (:func:`governance.roster.verify_roster_history`). Returns the changes and the
    roster at the end of them, or ``((), None)`` when the config has none (a legacy config with
    a fixed roster). ConfigError naming ``governance.roster_history[i].<field>``."""
    g = f.obj("governance")
    raw = g.doc.get("roster_history")
    if raw is None:
        return (), None
    if not isinstance(raw, list) or not raw:
        raise g.error("roster_history", "must be a non-empty list of signed roster changes (version 1 first)")
    changes: list[SignedRosterChange] = []
    for i, item in enumerate(raw):
        try:
            changes.append(SignedRosterChange.from_dict(item))
        except GovernanceError as e:
            raise g.error(f"roster_history[{i}].{e.field}" if e.field else f"roster_history[{i}]", e.reason) from None
    try:
        roster = verify_roster_history(admins, changes)
    except GovernanceError as e:
        raise g.error(f"roster_{e.field}", e.reason) from None
    return tuple(changes), roster


def write_json(path: Path, doc: Any, mode: int = 0o644) -> None:
    """Write ``doc`` as JSON, atomically and durably (:func:`mpcnet.common.fsutil.write_atomic`)."""
    from mpcnet.common.fsutil import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode(), mode)


class _EscapingFormatter(logging.Formatter):
    """One log line per record: the message (which may quote a caller's or a peer's text) has
    every control, format or bidi character escaped (:func:`governance.text.escape`, the one
    escaping of caller text), so it cannot forge lines or carry terminal escapes. A traceback or
    stack follows it, each of its lines escaped the same way and indented (:data:`TRACE_INDENT`):
    an exception's message may quote such text too (a newline in it must not start a line that
    reads as a record of its own)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return _trace_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _trace_lines(super().formatStack(stack_info))


TRACE_INDENT = "  | "
"""The prefix of every traceback or stack line in a text log (a record's line starts with its time)."""


def _trace_lines(text: str) -> str:
    return "\n".join(TRACE_INDENT + escape(line) for line in text.splitlines())


def setup_logging(log_file: Path | None, name: str, level: str = "INFO", log_format: str = "text") -> None:
    """Log lines with time, process name and level to ``log_file`` (or stderr); with
    ``log_format="json"`` one JSON object per line (:mod:`mpcnet.common.jsonlog`)."""
    import logging
    import sys

    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        from mpcnet.common.logfile import LineFileHandler  # whole lines; a failing disk reported once

        handler = LineFileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from mpcnet.common.jsonlog import JsonFormatter

        handler.setFormatter(JsonFormatter(name))
    else:
        handler.setFormatter(_EscapingFormatter(f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
