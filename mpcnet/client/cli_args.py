"""What the ``mpc`` CLI accepts on its command line: one parser per kind of value, and the exit codes.

Every numeric option goes through :class:`UInt` or :class:`Seconds` (ASCII digits only: ``int()``
alone accepts full-width digits and ``'1_000'``), every hex value through :class:`Hex` (exact byte
length), every identifier through :class:`Identifier` (``governance.text``), free text through
:class:`Text` (``governance.text.check_text``), every file through :class:`InFile`. A bad value is
a :class:`click.BadParameter` naming the option, with at most a short escaped prefix of the value
(``governance.text.quote``), which the CLI turns into one line on stderr and exit code 2.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any

import click

from governance import digits
from governance.errors import GovernanceError
from governance.text import check_name, check_request_id, check_text, escape, quote


class Exit(enum.IntEnum):
    """The ``mpc`` exit codes: the same outcome gives the same code in every command."""

    OK = 0  # success; a waited-for request ended DONE; an audit trail verified
    FAILED = 1  # the server refused the call; a waited-for request ended REJECTED/EXPIRED/FAILED; an audit trail does not verify
    USAGE = 2  # bad arguments, a missing/unreadable file, a wrong key file, not a cluster directory
    NO_ANSWER = 3  # the coordinator did not answer (unreachable, RPC deadline), or --timeout passed before the request ended
    INTERRUPTED = 130  # Ctrl-C
    BROKEN_PIPE = 141  # stdout was closed early (e.g. '| head'): 128 + SIGPIPE, nothing printed


EXIT_TABLE = (
    "Exit status:\n\n"
    "\b\n"
    "  0    success: the command did what it was asked; a waited-for request ended DONE;\n"
    "       an audit trail verified\n"
    "  1    refused or failed: the server refused the call; a waited-for request ended\n"
    "       REJECTED, EXPIRED or FAILED; an audit trail does not verify\n"
    "  2    usage error: bad arguments, a missing or unreadable file, a wrong key file,\n"
    "       not a cluster directory\n"
    "  3    no answer: the coordinator is unreachable or did not answer in time, or\n"
    "       --timeout passed before the request ended\n"
    "  130  interrupted (Ctrl-C)\n"
    "  141  stdout closed early (e.g. '| head'): nothing more is printed"
)

_SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")
_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]*)")


def parse_uint(text: str, what: str, lo: int, hi: int) -> int:
    """A whole number ``lo..hi`` written with ASCII digits only (:func:`governance.digits.parse_uint`,
    the one rule); ValueError naming ``what``."""
    try:
        return digits.parse_uint(text, what, lo, hi)
    except GovernanceError as e:
        raise ValueError(f"{what}: {e.reason}") from None


class UInt(click.ParamType[int]):
    """A whole number ``lo..hi`` (ASCII digits, no sign, no underscores)."""

    name = "N"

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and self.lo <= value <= self.hi:
            return value  # a default
        try:
            return parse_uint(value, "value", self.lo, self.hi)
        except ValueError as e:
            self.fail(str(e).removeprefix("value: "), param, ctx)


class Seconds(click.ParamType[float]):
    """A positive number of seconds (ASCII digits, optionally a decimal fraction), at most ``hi``."""

    name = "SECONDS"

    def __init__(self, hi: float) -> None:
        self.hi = hi

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value  # a default
        if not isinstance(value, str) or not _SECONDS.fullmatch(value) or not 0 < float(value) <= self.hi:
            self.fail(f"must be a number of seconds, more than 0 and at most {self.hi:g}, in ASCII digits, got {quote(value)}", param, ctx)
        return float(value)


class Hex(click.ParamType[bytes]):
    """Exactly ``size`` bytes as hex (an optional ``0x`` prefix; ASCII hex digits only)."""

    name = "HEX"

    def __init__(self, size: int) -> None:
        self.size = size

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> bytes:
        if isinstance(value, bytes):
            return value
        return parse_hex(value, self.size, lambda msg: self.fail(msg, param, ctx))


def parse_hex(value: Any, size: int, fail: Any) -> bytes:
    """``size`` bytes from hex text, or ``fail(message)`` (which raises)."""
    m = _HEX.fullmatch(value) if isinstance(value, str) else None
    if m is None or len(m.group(1)) % 2:
        fail(f"must be {size} bytes as hex ({2 * size} hex digits), got {quote(value)}")
        raise AssertionError  # fail raises
    raw = bytes.fromhex(m.group(1))
    if len(raw) != size:
        fail(f"must be {size} bytes as hex ({2 * size} hex digits), got {len(raw)} bytes")
    return raw


class Identifier(click.ParamType[str]):
    """A request id (``kind="request"``, also used for proposal ids) or a name (``kind="name"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = "ID" if kind == "request" else "NAME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_request_id(value) if self.kind == "request" else check_name(value, "name")
        except GovernanceError as e:
            self.fail(e.reason, param, ctx)


class Text(click.ParamType[str]):
    """Caller text shown to humans (a label, a description): ``governance.text.check_text``."""

    name = "TEXT"

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_text(value, "text", self.max_chars)
        except GovernanceError as e:
            self.fail(e.reason, param, ctx)


class InFile(click.ParamType[Path]):
    """An existing, readable regular file (not a directory)."""

    name = "FILE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        if not isinstance(value, str) or not value or "\x00" in value:
            self.fail(f"must be a file name, got {quote(value)}", param, ctx)
        path = Path(value)
        try:
            with path.open("rb"):
                pass
        except IsADirectoryError:
            self.fail(f"{quote(str(value))} is a directory, not a file", param, ctx)
        except OSError as e:
            self.fail(f"cannot read {quote(str(value))}: {e.strerror or type(e).__name__}", param, ctx)
        if not path.is_file():
            self.fail(f"{quote(str(value))} is not a regular file", param, ctx)
        return path


class PathText(click.ParamType[str]):
    """A BIP32 path such as ``m/0/1`` written in ASCII (``m`` for the key itself)."""

    name = "PATH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from crypto_core.errors import UsageError
        from mpcnet.client.sdk import to_path

        if not isinstance(value, str) or not value.isascii() or len(value) > 200:
            self.fail(f"must be a path such as m/0/1 in ASCII digits, got {quote(value)}", param, ctx)
        try:
            to_path(value)
        except (UsageError, ValueError) as e:
            self.fail(f"{escape(str(e))} (got {quote(value)})", param, ctx)
        return value


class Endpoint(click.ParamType[str]):
    """A coordinator address ``HOST:PORT`` (ASCII host name, IPv4 or ``[IPv6]``; port 1..65535)."""

    name = "HOST:PORT"
    _RE = re.compile(r"(?:[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5})")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        m = self._RE.fullmatch(value) if isinstance(value, str) else None
        if m is None or not 1 <= int(m.group(1)) <= 65535:
            self.fail(f"must be HOST:PORT (e.g. 127.0.0.1:50051), got {quote(value)}", param, ctx)
        return str(value)


class Choice(click.Choice[str]):
    """One of fixed words; the error quotes a short escaped prefix of the value."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if isinstance(value, str) and value in self.choices:
            return value
        self.fail(f"must be one of {', '.join(map(str, self.choices))}, got {quote(value)}", param, ctx)
