"""The one foundation of every command line of the project (``mpc``, ``mpc-cluster``,
``scripts/demo``, ``mpc-node``, ``mpc-coordinator``): the click parameter types that read a
caller's values, :func:`run`, which turns every way a command can end into one exit code and at
most one line on stderr (never a traceback), and :func:`server_command`, the servers' entry point.

Parameter types (a bad value is a :class:`click.BadParameter` naming the option, quoting at most a
short escaped prefix of the value with :func:`governance.text.quote`; a default given as a Python
value is checked the same way):

* :class:`UInt`: a whole number ``lo..hi`` in ASCII digits (:func:`governance.digits.parse_uint`,
  the one rule: ``int()`` alone reads full-width digits, ``1_000``, ``" 1"`` and ``+1``);
* :class:`Seconds`: a duration ``DIGITS[.DIGITS]`` in ``(0, hi]`` (:func:`parse_seconds`);
* :class:`Hex`: exactly ``size`` bytes as hex (:func:`parse_hex`);
* :class:`Identifier`: a request id or a name (:mod:`governance.text`);
* :class:`Text`: caller text shown to humans (:func:`governance.text.check_text`);
* :class:`PathArg`: a path: non-empty, no NUL, at most :data:`MAX_PATH` characters;
  :class:`InFile`: that, naming a readable regular file;
* :class:`Endpoint`: ``HOST:PORT``; :class:`Choice`: one of fixed words.

Exit codes (:func:`run`):

* the command's own return value (an ``int``; anything else is 0);
* 2 for a usage error (unknown command or option, a missing or malformed value), printed as
  ``PROG: error: MESSAGE (see 'PROG ... --help')`` on one line (ASCII, at most
  :data:`USAGE_CHARS` characters of message: click's own messages hold the caller's text);
* 130 when interrupted (Ctrl-C, SIGINT): ``PROG: interrupted``;
* 141 (128 + SIGPIPE) when the reader of stdout went away (``PROG ... --json | head -1``):
  nothing is printed, the rest of the output is discarded;
* a :class:`click.ClickException`'s own code (:class:`Failed`: 1): ``PROG: MESSAGE``;
* what the program's own ``handle`` maps an exception to (``mpc``: its server errors, exit 1 or 3);
* 1 for anything unexpected: ``PROG: internal error (a bug, please report it): TYPE: MESSAGE``;
  with ``MPC_DEBUG=1`` in the environment the traceback is printed before it.

Every message is passed through :func:`governance.text.escape`, so a caller's text in it (a path,
an option value) cannot add lines or carry terminal escapes. Shell completion comes from click:
``eval "$(_PROG_COMPLETE=bash_source PROG)"`` (``zsh_source``, ``fish_source``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from governance import digits
from governance.errors import GovernanceError
from governance.text import check_name, check_request_id, check_text, escape, quote
from mpcnet.common.config import ConfigError, setup_logging

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

MAX_PATH = 4096
"""The most characters of a path option."""
USAGE_CHARS = 300
"""The most characters of a usage error's message shown (click's messages echo the caller's text)."""

_SECONDS_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")
_SECONDS_LONG_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_HEX_RE = re.compile(r"(?:0[xX])?([0-9a-fA-F]*)")


# --- values --------------------------------------------------------------------------------------


def parse_seconds(text: object, field: str, hi: float) -> float:
    """A duration in seconds, ``DIGITS[.DIGITS]`` in ASCII (no sign, exponent, ``nan``, ``inf``,
    space or other script's digits), more than 0 and at most ``hi``. GovernanceError naming ``field``."""
    if not isinstance(text, str) or _SECONDS_RE.fullmatch(text) is None:
        if isinstance(text, str) and _SECONDS_LONG_RE.fullmatch(text):  # digits 0-9, but too many of them
            raise GovernanceError(field, f"must be more than 0 and at most {hi:.15g} seconds (at most 9 decimals), got {quote(text)}")
        raise GovernanceError(field, f"must be a number of seconds written with the digits 0-9 (e.g. 30 or 2.5), got {quote(text)}")
    s = float(text)
    if not 0 < s <= hi:
        raise GovernanceError(field, f"must be more than 0 and at most {hi:.15g} seconds, got {s:.15g}")
    return s


def parse_hex(value: object, size: int, field: str) -> bytes:
    """Exactly ``size`` bytes written as hex (ASCII hex digits, an optional ``0x``).
    GovernanceError naming ``field``."""
    m = _HEX_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None or len(m.group(1)) % 2:
        raise GovernanceError(field, f"must be {size} bytes as hex ({2 * size} hex digits), got {quote(value)}")
    raw = bytes.fromhex(m.group(1))
    if len(raw) != size:
        raise GovernanceError(field, f"must be {size} bytes as hex ({2 * size} hex digits), got {len(raw)} bytes")
    return raw


T = TypeVar("T")


class _Checked(click.ParamType[T]):
    """A type whose values pass one ``check(value) -> T`` raising GovernanceError (a default too)."""

    metavar: str | None = None

    def check(self, value: Any) -> T:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> T:
        try:
            return self.check(value)
        except GovernanceError as e:
            self.fail(e.reason, param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str | None:
        return self.metavar


class IndexList(_Checked[tuple[int, ...]]):
    """``1,2,4,5``: distinct roster indices 1..255, comma-separated (ASCII digits)."""

    name = "N,N,..."

    def check(self, value: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        if not isinstance(value, str) or not value:
            raise GovernanceError("nodes", "must be roster indices separated by commas, e.g. 1,2,4,5")
        parts = value.split(",")
        if len(parts) > 255:
            raise GovernanceError("nodes", "at most 255 nodes")
        out = tuple(digits.parse_uint(p, f"nodes[{i}]", 1, 255) for i, p in enumerate(parts))
        if len(set(out)) != len(out):
            raise GovernanceError("nodes", "a node appears twice")
        return out


class UInt(_Checked[int]):
    """A whole number ``lo..hi`` (ASCII digits, no sign, no underscores); shown in help as ``N``,
    or ``[lo-hi]`` with ``show_range``."""

    name = "N"

    def __init__(self, lo: int, hi: int, *, show_range: bool = False) -> None:
        self.lo, self.hi = lo, hi
        self.metavar = f"[{lo}-{hi}]" if show_range else None

    def check(self, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):  # a default
            value = str(value)
        return digits.parse_uint(value, "value", self.lo, self.hi)


class Seconds(_Checked[float]):
    """A number of seconds in ``(0, hi]`` (:func:`parse_seconds`)."""

    name = "SECONDS"

    def __init__(self, hi: float) -> None:
        self.hi = hi

    def check(self, value: Any) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # a default
            if not 0 < value <= self.hi:
                raise GovernanceError("value", f"must be more than 0 and at most {self.hi:.15g} seconds, got {value:.15g}")
            return float(value)
        return parse_seconds(value, "value", self.hi)


class Hex(_Checked[bytes]):
    """Exactly ``size`` bytes as hex (:func:`parse_hex`)."""

    name = "HEX"

    def __init__(self, size: int) -> None:
        self.size = size

    def check(self, value: Any) -> bytes:
        return value if isinstance(value, bytes) and len(value) == self.size else parse_hex(value, self.size, "value")


class Identifier(_Checked[str]):
    """A request id (``kind="request"``, also used for proposal ids) or a name (``kind="name"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = "ID" if kind == "request" else "NAME"

    def check(self, value: Any) -> str:
        return check_request_id(value) if self.kind == "request" else check_name(value, "name")


class Text(_Checked[str]):
    """Caller text shown to humans (a label, a description): :func:`governance.text.check_text`."""

    name = "TEXT"

    def __init__(self, max_chars: int, max_utf8: int | None = None) -> None:
        self.max_chars, self.max_utf8 = max_chars, max_utf8

    def check(self, value: Any) -> str:
        text = check_text(value, "text", self.max_chars)
        if self.max_utf8 is not None and len(text.encode("utf-8")) > self.max_utf8:
            raise GovernanceError("text", f"at most {self.max_utf8} bytes of UTF-8, got {len(text.encode('utf-8'))}")
        return text


class PathArg(_Checked[Path]):
    """A file or directory path, not checked for existence (the command says what is wrong with
    it): non-empty, no NUL, at most :data:`MAX_PATH` characters; with ``resolve``, ``~`` expanded
    and made absolute (a usage error if that fails: an unknown user, an unreadable parent)."""

    name = "path"

    def __init__(self, metavar: str = "PATH", *, resolve: bool = False) -> None:
        self.metavar, self.resolve = metavar, resolve

    def check(self, value: Any) -> Path:
        if isinstance(value, Path):
            path = value
        elif not isinstance(value, str) or not value or "\x00" in value or len(value) > MAX_PATH:
            raise GovernanceError("value", f"must be a path (non-empty, no NUL, at most {MAX_PATH} characters), got {quote(value)}")
        else:
            path = Path(value)
        if not self.resolve:
            return path
        try:
            return path.expanduser().resolve()
        except (OSError, RuntimeError) as e:
            raise GovernanceError("value", f"cannot resolve {quote(str(path))}: {getattr(e, 'strerror', None) or e}") from None


class InFile(PathArg):
    """A :class:`PathArg` naming an existing, readable regular file (not a directory)."""

    name = "FILE"

    def __init__(self) -> None:
        super().__init__("FILE")

    def check(self, value: Any) -> Path:
        path = super().check(value)
        try:
            with path.open("rb"):
                pass
        except IsADirectoryError:
            raise GovernanceError("value", f"{quote(str(path))} is a directory, not a file") from None
        except OSError as e:
            raise GovernanceError("value", f"cannot read {quote(str(path))}: {e.strerror or type(e).__name__}") from None
        if not path.is_file():
            raise GovernanceError("value", f"{quote(str(path))} is not a regular file")
        return path


class Endpoint(_Checked[str]):
    """A server address ``HOST:PORT`` (ASCII host name, IPv4 or ``[IPv6]``; port 1..65535)."""

    name = "HOST:PORT"
    _RE = re.compile(r"(?:[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5})")

    def check(self, value: Any) -> str:
        m = self._RE.fullmatch(value) if isinstance(value, str) else None
        if m is None or not 1 <= int(m.group(1)) <= 65535:
            raise GovernanceError("value", f"must be HOST:PORT (e.g. 127.0.0.1:50051), got {quote(value)}")
        return str(value)


class Choice(click.Choice[str]):
    """One of fixed words; the error quotes a short escaped prefix of the value."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if isinstance(value, str) and value in self.choices:
            return value
        self.fail(f"must be one of {', '.join(map(str, self.choices))}, got {quote(value)}", param, ctx)


# --- endings -------------------------------------------------------------------------------------


class Failed(click.ClickException):
    """The command failed (exit 1); the message is one line on stderr: ``PROG: MESSAGE``."""

    exit_code = EXIT_FAILED


class Busy(Failed):
    """Another process holds what this one needs (exit 2, :data:`EXIT_BUSY`): a server's keystore."""

    exit_code = 2


EXIT_BUSY = Busy.exit_code


Handler = Callable[[Exception], "tuple[int, str] | None"]
"""A program's own exceptions: ``(exit code, message)`` (printed as ``PROG: MESSAGE``), or None
for :func:`run`'s own handling."""


def say(prog: str, message: str) -> None:
    """``PROG: MESSAGE`` on stderr, escaped to one line."""
    with contextlib.suppress(OSError, ValueError):
        print(f"{prog}: {escape(message)}", file=sys.stderr, flush=True)


def _command_path(command: click.Command, args: Sequence[str], prog: str) -> str:
    """``PROG SUB ...``: the (sub)command ``args`` name, for an error raised without the
    subcommand's context (click reports an option's missing value with the root's)."""
    words = [prog]
    for arg in args:
        if not isinstance(command, click.Group) or arg not in command.commands:
            break
        command = command.commands[arg]
        words.append(arg)
    return " ".join(words)


def _usage_line(command: click.Command, args: Sequence[str], prog: str, e: click.UsageError) -> str:
    msg = "missing command" if isinstance(e, click.exceptions.NoArgsIsHelpError) else e.format_message()
    msg = escape(msg).encode("ascii", "backslashreplace").decode("ascii")
    if len(msg) > USAGE_CHARS:
        msg = msg[:USAGE_CHARS] + f"... ({len(msg)} characters)"
    where = e.ctx.command_path if e.ctx is not None and e.ctx.command is not command else _command_path(command, args, prog)
    return f"error: {msg} (see '{escape(where)} --help')"


def _discard_stdout() -> None:
    """The reader of stdout is gone: point the descriptor at /dev/null, so the interpreter's
    final flush of whatever is still buffered cannot fail again (and print a warning)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture): nothing to protect
        pass


def _completion(command: click.Command, prog: str) -> int | None:
    """Shell completion (click's): the exit code when ``_PROG_COMPLETE`` asks for it, else None."""
    var = f"_{prog}_COMPLETE".replace("-", "_").upper()
    instruction = os.environ.get(var)
    if not instruction:
        return None
    from click.shell_completion import shell_complete

    return shell_complete(command, {}, prog, var, instruction)


def run(command: click.Command, argv: Sequence[str] | None, prog: str, *, handle: Handler | None = None) -> int:
    """Run ``command`` on ``argv`` (None: ``sys.argv[1:]``) as program ``prog`` and return its exit
    code (see the module docstring); ``handle`` maps the program's own exceptions first. Never
    raises (SystemExit raised by the command gives its code)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            completed = _completion(command, prog)
            if completed is not None:
                return completed
            with command.make_context(prog, args) as ctx:
                rv = command.invoke(ctx)
            sys.stdout.flush()
        except click.exceptions.Exit as e:  # --help, or ctx.exit(code)
            sys.stdout.flush()
            return e.exit_code
        except click.exceptions.Abort as e:  # click's name for KeyboardInterrupt and EOF at a prompt
            raise KeyboardInterrupt from e
    except click.UsageError as e:
        say(prog, _usage_line(command, args, prog, e))
        return EXIT_USAGE
    except click.ClickException as e:
        say(prog, e.format_message())
        return e.exit_code
    except KeyboardInterrupt:
        say(prog, "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except SystemExit as e:
        code = e.code
        if code is None or isinstance(code, int):
            return code or 0
        say(prog, str(code))
        return EXIT_FAILED
    except Exception as e:
        answer = handle(e) if handle is not None else None
        if answer is not None:
            say(prog, answer[1])
            return answer[0]
        if os.environ.get("MPC_DEBUG"):
            with contextlib.suppress(OSError, ValueError):
                traceback.print_exc()
        say(prog, f"internal error (a bug, please report it): {type(e).__name__}: {quote(str(e), 200)}")
        return EXIT_FAILED
    return int(rv) if isinstance(rv, int) else EXIT_OK


# --- the servers ---------------------------------------------------------------------------------

SERVER_EPILOG = "\b\nExit codes: 0 stopped cleanly, 1 cannot start (see the log), 2 usage error or bad config, 130 interrupted."


class ServerConfig(Protocol):
    """What :func:`server_command` reads of a server's configuration."""

    @property
    def name(self) -> str: ...

    @property
    def log_file(self) -> Path | None: ...

    @property
    def log_level(self) -> str: ...

    @property
    def log_format(self) -> str: ...


C = TypeVar("C", bound=ServerConfig)


def lazy_command(target: str) -> click.Command:
    """The click command at ``target`` ("package.module:attribute"), imported now (a server's
    off-line subcommands are imported only when used)."""
    import importlib

    module, _, attr = target.partition(":")
    command = getattr(importlib.import_module(module), attr)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


def server_command(
    name: str, help: str, what: str, load: Callable[[Path], C], serve: Callable[[C, threading.Event], int],
    start_errors: tuple[type[Exception], ...], log: logging.Logger,
) -> click.Command:
    """``NAME --config FILE [--log-format text|json]``: load the ``what`` configuration (a :class:`ConfigError` is a usage
    error, exit 2), set up logging (a log file that cannot be opened: ``NAME: cannot start: ...``,
    exit 1), then ``serve(cfg, serving)`` it, where ``serve`` sets the event
    ``serving`` once it serves (e.g. :func:`mpcnet.common.rpc.wait_until_stopped`'s ``on_ready``).
    An exception of ``start_errors`` is logged and is, raised before ``serving`` was set, ``NAME:
    cannot start: ...`` on stderr, exit 1 (:class:`Failed`; exit 2, :class:`Busy`, when its
    ``exit_code`` attribute is :data:`EXIT_BUSY`), and raised after it, ``NAME: failed while
    serving: ...``, exit 1 (the server had started: this is not a start-up problem); anything else
    is logged with its traceback and is :func:`run`'s "internal error", exit 1. Run it with :func:`run`."""

    @click.command(name=name, help=help, context_settings={"help_option_names": ["-h", "--help"]}, epilog=SERVER_EPILOG)
    @click.option("--config", required=True, type=PathArg("FILE"), help=f"{what} configuration (JSON)")
    @click.option("--log-format", type=Choice(["text", "json"]), default=None,
                  help="log lines as text or one JSON object per line (default: the config's log_format, else text)")
    def command(config: Path, log_format: str | None) -> int:
        try:
            cfg = load(config)
        except ConfigError as e:
            raise click.UsageError(str(e)) from None
        try:  # a log_file that is a directory, or whose directory cannot be made: one line, exit 1
            setup_logging(cfg.log_file, cfg.name, cfg.log_level, log_format or cfg.log_format)
        except OSError as e:
            raise Failed(f"cannot start: log_file {cfg.log_file}: cannot open ({e.strerror or type(e).__name__})") from None
        serving = threading.Event()
        try:
            return serve(cfg, serving)
        except start_errors as e:
            if serving.is_set():
                log.error("failed while serving: %s", e)
                raise Failed(f"failed while serving: {e}") from None
            log.error("cannot start: %s", e)
            busy = getattr(e, "exit_code", EXIT_FAILED) == EXIT_BUSY  # e.g. a keystore another process holds
            raise (Busy if busy else Failed)(f"cannot start: {e}") from None
        except Exception:
            log.exception("crashed")
            raise

    return command
